"""The runs file and the summary of benchmarks/quality.py: what makes two
runs the same, and mean, standard deviation, min and max over seeds, as
JSON and as one Markdown table a set."""
import json
import os
import statistics

from quality_variants import BUDGET, variant_settings


#: The figures summarised, when a result has them (size ranges with objects only).
METRICS = ("AR@10", "AR@100", "AR@1000", "AR_small@100", "AR_medium@100", "AR_large@100",
           "R@100@0.5", "R@100@0.7")


def run_key(record):
    """What makes two runs the same: set, variant, settings, seed, budget,
    CPU threads."""
    return (record["set"], record["variant"], json.dumps(record["settings"], sort_keys=True),
            record["seed"], float(record["budget_scale"]), str(record.get("threads", "1")))


def budgets(records, scale, threads):
    """``{(set, seed): CPU seconds}`` of 0.3.0's default's own runs (the
    ``today`` settings) at ``scale`` on ``threads``: the budget a variant
    of that set and seed gets, measured rather than calibrated."""
    return {(r["set"], r["seed"]): r["cpu_seconds"] for r in records
            if r["settings"] == BUDGET and float(r["budget_scale"]) == scale
            and str(r.get("threads", "1")) == threads}


def read_runs(path):
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def spread(values):
    values = [float(v) for v in values]
    return dict(mean=statistics.fmean(values),
                std=statistics.stdev(values) if len(values) > 1 else 0.0,
                min=min(values), max=max(values), n=len(values))


def summarise(runs, datasets, variants, seeds, scale, threads):
    """``{set label: {"objects", "variants": {name: {...}}}}`` from the
    runs that match the selection (the latest run of each key)."""
    latest = {run_key(r): r for r in runs}
    out = {}
    for dataset in datasets:
        for label, classes, scored in dataset.scores:
            field = "recall" + (f"_{label}" if label else "")
            set_label = dataset.name + (f" ({label})" if label else "")
            entry = out.setdefault(set_label, dict(
                set=dataset.name, classes=classes or dataset.classes, variants={}))
            for variant in variants:
                rows = [latest.get((dataset.name, variant["name"],
                                    json.dumps(variant_settings(variant, variants),
                                               sort_keys=True),
                                    seed, float(scale), threads)) for seed in seeds]
                rows = [r for r in rows if r is not None]
                if not rows:
                    continue
                recall = [r[field] for r in rows]
                figures = {}
                for metric in METRICS:
                    size = metric.partition("@")[0].partition("_")[2]
                    if any(metric not in r or (size and not r.get(f"objects_{size}"))
                           for r in recall):
                        continue
                    figures[metric] = spread([r[metric] for r in recall])
                # (the synthetic set draws other images for each seed: give the range)
                entry["objects"] = _span(r.get("objects") for r in recall)
                entry["images"] = _span(r.get("images") for r in recall)
                entry["objects_by_size"] = {size: _span(r[f"objects_{size}"] for r in recall)
                                            for size in ("small", "medium", "large")
                                            if f"objects_{size}" in recall[-1]}
                entry["variants"][variant["name"]] = dict(
                    settings=variant_settings(variant, variants),
                    seeds=[r["seed"] for r in rows],
                    metrics=figures, cpu_seconds=spread([r["cpu_seconds"] for r in rows]),
                    steps=spread([r["steps"] for r in rows]),
                    epochs=sorted({r["epochs"] for r in rows}))
                if variant_settings(variant, variants) == BUDGET:   # today's default: the budget
                    entry["budget"] = dict(steps=rows[0]["budget_steps"],
                                           cpu_seconds=spread([r["cpu_seconds"] for r in rows]))
    return out


def _span(values):
    """``"884-902"`` for counts that differ between seeds, else the count."""
    values = sorted(set(values))
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _cell(s, digits=3):
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f}"
    return (f"{s['mean']:.{digits}f} ±{s['std']:.{digits}f} "
            f"[{s['min']:.{digits}f}, {s['max']:.{digits}f}]")


def markdown(summary, scale):
    """One table a set: mean ±sd [min, max] over seeds."""
    lines = [f"# Proposal recall at equal CPU time (budget x{scale:g})", "",
             "Each cell: mean ±standard deviation [min, max] over the seeds. CPU s: the "
             "rpn.fit call (image check, training, per-epoch validation, final "
             "recall), user + system seconds of the process.", ""]
    for label, entry in summary.items():
        if not entry["variants"]:
            continue
        metrics = [m for m in METRICS
                   if any(m in v["metrics"] for v in entry["variants"].values())]
        lines += [f"## {label}", "",
                  f"{entry.get('images')} validation images, {entry.get('objects')} objects"
                  f" of {', '.join(entry['classes']) if entry['classes'] else 'all classes'}"
                  + (" (" + ", ".join(f"{n} {size}" for size, n in entry["objects_by_size"].items())
                     + ")" if entry["objects_by_size"] else "")
                  + "." + (f" Budget: the default's {entry['budget']['steps']:g} steps, "
                           f"{_cell(entry['budget']['cpu_seconds'], 0)} CPU s."
                           if "budget" in entry else ""),
                  "", "| variant | seeds | " + " | ".join(metrics) + " | CPU s | steps |",
                  "|---|---|" + "---|" * (len(metrics) + 2)]
        for name, v in entry["variants"].items():
            cells = [_cell(v["metrics"][m]) if m in v["metrics"] else "" for m in metrics]
            lines.append(f"| {name} | {len(v['seeds'])} | " + " | ".join(cells)
                         + f" | {_cell(v['cpu_seconds'], 0)} | {_cell(v['steps'], 0)} |")
        lines.append("")
    return "\n".join(lines)

