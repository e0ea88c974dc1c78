"""Proposal recall of model variants at equal CPU time, over several seeds.

For each data set, the budget is what the default settings' training costs
(``rpn train`` with no options: the default preset, whose ``min_steps``
raises the epochs to about 448 steps). The ``default`` variant trains
exactly that many steps; any other variant gets the same CPU time: its
steps per CPU second are calibrated in this process and it trains ``the
budget x its rate`` steps, in whole epochs rounded down. The budget is the CPU seconds
of the ``today`` variant's own run of that set, seed, budget scale and
thread count when the runs file has it (run ``today`` first), else the
default's calibrated rate (15 to 20 % low on two threads). CPU time is this
process's user + system time (plus waited-for children), so other load on
a shared machine favours no variant. Every run records its ``rpn.fit``'s
CPU seconds, its steps and where its budget came from (``budget_from``).

Sets (``--sets``): ``synthetic`` (``data="synthetic"`` as ``make demo``
trains it), ``raccoon`` (the VOC folder ``../shared/data/raccoon``),
``raccoon-mosaic`` (2 x 2 mosaics of its photographs), ``raccoon-aspect``
(its photographs cropped to 2:1 and 1:2) and ``heldout`` (the synthetic set
trained on rectangles and ellipses only, recall measured on triangles,
and on the trained classes). Derived data goes to the git-ignored
``benchmarks/.cache/``.

    PYTHONPATH=src .venv/bin/python benchmarks/quality.py --quick --sets raccoon
    PYTHONPATH=src .venv/bin/python benchmarks/quality.py --seeds 0,1,2
    PYTHONPATH=src .venv/bin/python benchmarks/quality.py --variants default,lambd2 --resume
    PYTHONPATH=src .venv/bin/python benchmarks/quality.py --variant wide:anchor_sizes=[0.1,0.3]

``--summarise`` trains nothing and writes the summary of the runs already in the
results (those of the sets, variants and seeds asked for).

Results: every finished run is one JSON line appended to
``results/quality-runs.jsonl``; the summary (mean, standard deviation,
min and max over seeds) goes to ``results/quality.json`` and
``results/quality.md`` and is printed. ``--quick`` writes
``results/quality-quick*`` instead.

Only the public API trains and measures: ``rpn.fit`` and ``rpn.evaluate``.
Variant settings are passed to ``rpn.fit`` untouched (any RunConfig field).
"""
import argparse
import datetime
import json

import os
import resource
import shutil
import subprocess
import sys
import time

import derived_sets
import rpn  # noqa: F401  (before MXNet: its CPU threads, rpn.ops.threads)
from quality_report import budgets, markdown, read_runs, run_key, summarise
from quality_sets import CACHE, RACCOON, SETS, prepare_sets, resolved, steps_per_epoch
from quality_variants import BUDGET, VARIANTS, choose_variants, variant_settings
from rpn.ops.threads import current_threads

#: MXNet's CPU operator threads in this process: runs on other counts are other
#: measurements (a run recorded before 0.4.0 chose them had MXNet's one here).
THREADS = current_threads()["threads"] or "1"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


#: The proposal counts recall is measured at.
KS = (10, 100, 300, 1000)

#: Calibration: two fits on a subset of CALIBRATION_STEPS batches an epoch,
#: of 1 and 1 + CALIBRATION_EPOCHS epochs; the difference is steady training.
CALIBRATION_EPOCHS = 5


def cpu_seconds():
    """User + system CPU seconds of this process and its waited-for children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


# -- one run -------------------------------------------------------------------

def fit_cpu(data, run, classes, epochs, settings, seed):
    """``rpn.fit`` into a fresh ``run``: ``(CPU seconds, wall seconds)``."""
    import rpn
    shutil.rmtree(run, ignore_errors=True)
    tic, wall = cpu_seconds(), time.time()
    rpn.fit(data, run, classes=classes, epochs=epochs, settings=settings, seed=seed,
            num_workers=0, quiet=True)
    return cpu_seconds() - tic, time.time() - wall


def calibrate(dataset, settings, seed):
    """Training steps per CPU second of ``settings`` on ``dataset``: the CPU
    time of a fit of 1 + CALIBRATION_EPOCHS epochs on a subset less that of
    a fit of 1 epoch (model building, the first epoch's warm-up, checks and
    the final evaluation cancel). Returns ``(rate, CPU seconds spent)``."""
    data, calib_settings = dataset.calibration(settings)
    config = resolved(calib_settings, dataset)
    if dataset.voc:
        train = derived_sets.count_objects(data, "train", dataset.classes)[1]
    else:
        train = config.num_train
    steps = steps_per_epoch(config, train)
    run = os.path.join(CACHE, "runs", "calibration")
    tic = cpu_seconds()
    short, _ = fit_cpu(data, run, dataset.classes, 1, calib_settings, seed)
    long, _ = fit_cpu(data, run, dataset.classes, 1 + CALIBRATION_EPOCHS, calib_settings, seed)
    shutil.rmtree(run, ignore_errors=True)
    return CALIBRATION_EPOCHS * steps / max(long - short, 1e-6), cpu_seconds() - tic


def schedule(dataset, settings):
    """``(steps an epoch, default epochs)`` of ``settings`` on ``dataset``:
    the epochs ``rpn.fit`` picks without ``epochs=`` (raised to reach
    ``min_steps``)."""
    config = resolved(settings, dataset)
    train, _ = dataset.images(config)
    per_epoch = steps_per_epoch(config, train)
    return per_epoch, max(config.train.epochs, -(-config.train.min_steps // max(per_epoch, 1)))


def measure(dataset, variant, seed, scale, default_rates, keep, budget_cpu=None):
    """Train ``variant`` on ``dataset`` for the budget and score it. Returns
    the run's record (one JSON line). ``budget_cpu``: the CPU seconds of
    0.3.0's default's own run of this set and seed, when measured: the
    budget then (else its calibrated rate, which on two threads was 15 to
    20 % low)."""
    import rpn
    settings = variant_settings(variant)
    per_default, epochs_default = schedule(dataset, BUDGET)
    budget_steps = per_default * epochs_default * scale
    per_epoch, _ = schedule(dataset, settings)
    calibration_cpu, rate, default_rate = 0.0, None, None
    if settings != BUDGET:
        key = (dataset.name, seed)
        if budget_cpu is not None:
            default_rate, spent = budget_steps / budget_cpu, 0.0
        else:
            if key not in default_rates:
                default_rates[key] = calibrate(dataset, BUDGET, seed)
            default_rate, spent = default_rates[key]
        rate, calibration_cpu = calibrate(dataset, settings, seed)
        calibration_cpu += spent
        target = budget_steps * rate / default_rate
    else:
        target = budget_steps
    # whole epochs, rounded down: a variant never gets more than its share
    # (runs before budget_from rounded to the nearest epoch)
    epochs = max(1, int(target // per_epoch))
    run = run_folder(dataset, variant, seed)
    fit_seconds, wall = fit_cpu(dataset.data, run, dataset.classes, epochs, settings, seed)
    record = dict(
        set=dataset.name, variant=variant["name"], settings=settings, seed=seed,
        budget_scale=scale, threads=THREADS, data=dataset.data, classes=dataset.classes,
        epochs=epochs, steps_per_epoch=per_epoch, steps=epochs * per_epoch,
        budget_steps=budget_steps, target_steps=round(target, 1),
        steps_per_cpu_second=rate and round(rate, 4),
        default_steps_per_cpu_second=default_rate and round(default_rate, 4),
        budget_cpu_seconds=default_rate and round(budget_steps / default_rate, 1),
        budget_from=None if default_rate is None else "run" if budget_cpu else "calibration",
        cpu_seconds=round(fit_seconds, 1), wall_seconds=round(wall, 1),
        calibration_cpu_seconds=round(calibration_cpu, 1))
    tic = cpu_seconds()
    for label, classes, scored in dataset.scores:
        result, _ = rpn.evaluate(run, scored or dataset.data, "val",
                                 classes=classes or dataset.classes, ks=KS, num_workers=0)
        record["recall" + (f"_{label}" if label else "")] = {
            k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()}
        if classes:
            record["scored_classes" + (f"_{label}" if label else "")] = classes
    record["eval_cpu_seconds"] = round(cpu_seconds() - tic, 1)
    record.update(finished=datetime.datetime.now().isoformat(timespec="seconds"),
                  code=_code_version())
    if not keep:
        shutil.rmtree(run, ignore_errors=True)
    return record


def run_folder(dataset, variant, seed):
    """Where ``variant`` (or its record) trains on ``dataset`` with ``seed``."""
    name = variant["variant"] if "variant" in variant else variant["name"]
    return os.path.join(CACHE, "runs", dataset.name, f"{name}-seed{seed}")


def rescore(dataset, base, variant, run):
    """The record of an inference-only ``variant``: the run of ``base`` (its
    record ``base``), scored with the variant's ``inference`` settings."""
    import rpn
    model = rpn.load(run).with_settings(**variant["inference"])
    record = dict(base, variant=variant["name"], settings=variant_settings(variant),
                  inference=variant["inference"], trained_as=base["variant"])
    tic = cpu_seconds()
    for label, classes, scored in dataset.scores:
        result, _ = rpn.evaluate(model, scored or dataset.data, "val",
                                 classes=classes or dataset.classes, ks=KS, num_workers=0)
        record["recall" + (f"_{label}" if label else "")] = {
            k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()}
    record["eval_cpu_seconds"] = round(cpu_seconds() - tic, 1)
    record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    return record


def _code_version():
    """The commit of the package measured, with ``+src`` when ``src/`` has
    uncommitted changes."""
    def git(*words):
        return subprocess.run(["git", "-C", ROOT, *words], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + ("+src" if git("status", "--porcelain",
                                                                     "--", "src") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


# -- main ----------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    parser.add_argument("--variants", default="default",
                        help="comma-separated names from VARIANTS ('none' for only --variant)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="an ad-hoc variant (values parsed as JSON where possible); repeatable")
    parser.add_argument("--seeds", help="comma-separated (default 0,1,2; --quick: 0)")
    parser.add_argument("--budget-scale", type=float,
                        help="fraction of the default's training (default 1; --quick: 0.25)")
    parser.add_argument("--quick", action="store_true",
                        help="one seed, a quarter of the budget, results/quality-quick*")
    parser.add_argument("--resume", action="store_true",
                        help="skip runs already in the runs file (same set, variant, "
                             "settings, seed and budget)")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--summarise", action="store_true",
                        help="train nothing: summarise the runs already in the results")
    parser.add_argument("--raccoon", default=RACCOON, help="the raccoon VOC folder")
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--list", action="store_true", help="list the variants and sets")
    args = parser.parse_args(argv)
    if args.list:
        for v in VARIANTS:
            print(f"{v['name']}: {json.dumps(variant_settings(v))}" + (f" (scores the runs of {v['from']})" if 'from' in v else ''))
        print("sets:", ", ".join(SETS))
        return 0
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    scale = args.budget_scale or (0.25 if args.quick else 1.0)
    prefix = os.path.join(args.results, "quality-quick" if args.quick else "quality")
    runs_path = prefix + "-runs.jsonl"
    variants = choose_variants(args.variants, args.variant)
    datasets = prepare_sets([s for s in args.sets.split(",") if s], args.raccoon)
    os.makedirs(args.results, exist_ok=True)
    done = {run_key(r) for r in read_runs(runs_path)} if args.resume else set()
    default_rates, measured = {}, budgets(read_runs(runs_path), scale, THREADS)
    # seed-major: load on the machine hits variants alike
    for seed in ([] if args.summarise else seeds):
        for dataset in datasets:
            trained = {}                 # this seed's trained runs, for what rescores them
            for variant in variants:
                probe = dict(set=dataset.name, variant=variant["name"],
                             settings=variant_settings(variant, variants), seed=seed,
                             budget_scale=scale, threads=THREADS)
                if run_key(probe) in done:
                    print(f"quality: {dataset.name} {variant['name']} seed {seed}: done before",
                          file=sys.stderr)
                    continue
                if "from" in variant:
                    base = trained.get(variant["from"])
                    if base is None:
                        print(f"quality: {dataset.name} {variant['name']} seed {seed}: its base "
                              "was measured before, not kept: skipped", file=sys.stderr)
                        continue
                    record = rescore(dataset, base, variant, run_folder(dataset, base, seed))
                else:
                    rescored = any(v.get("from") == variant["name"] for v in variants)
                    record = measure(dataset, variant, seed, scale, default_rates,
                                     args.keep or rescored, measured.get((dataset.name, seed)))
                    trained[variant["name"]] = record
                    measured.update(budgets([record], scale, THREADS))
                with open(runs_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                figures = ", ".join(f"{k} {record['recall'][k]:.3f}"
                                    for k in ("AR@100", "AR@1000", "R@100@0.7"))
                print(f"quality: {dataset.name} {variant['name']} seed {seed}: {figures}; "
                      f"{record['steps']} steps, {record['cpu_seconds']:.0f} CPU s, "
                      f"{record['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
            if not args.keep:                   # the runs kept for rescoring
                for record in trained.values():
                    shutil.rmtree(run_folder(dataset, record, seed), ignore_errors=True)
    summary = summarise(read_runs(runs_path), datasets, variants, seeds, scale, THREADS)
    with open(prefix + ".json", "w") as f:
        json.dump(dict(budget_scale=scale, seeds=seeds, sets=summary), f, indent=1)
    table = markdown(summary, scale)
    with open(prefix + ".md", "w") as f:
        f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
