"""The variants of benchmarks/quality.py: named settings (or a preset, or an
inference-only change scored on another variant's runs), ad-hoc variants
from the command line, and what identifies a variant's runs."""
import json
import re


#: The budget: today's default, whose scale is its own (the default preset
#: chooses its scale from the objects' sizes since 0.4.0; given a size it
#: does not, and these are today's).
BUDGET = {"size": 112, "max_size": 192}


def preset_settings(name):
    """The settings that make preset ``name`` out of the default, as a
    variant's settings (lists as JSON lists)."""
    from rpn.config import PRESETS
    base, other = PRESETS["default"].to_dict(), PRESETS[name].to_dict()
    return {k: v for k, v in other.items() if json.dumps(base.get(k)) != json.dumps(v)}


#: The named variants: settings are any RunConfig fields, passed to rpn.fit as given.
#: A variant with ``"from"`` trains nothing: it scores the runs of the variant it
#: names with its ``"inference"`` settings changed (NMS, ranking: what takes
#: no training), so it costs one evaluation and no CPU budget.
VARIANTS = [
    {"name": "default", "settings": {}},
    {"name": "lambd2", "settings": {"lambd": 2.0}},
    {"name": "size128", "settings": {"resize": "fixed", "size": 128, "max_size": 128}},
    {"name": "giou", "settings": {"giou_weight": 1.0}},
    {"name": "iou", "settings": {"iou_branch": True}},
    {"name": "refine32", "settings": {"refine": True, "refine_rois": 32}},
    {"name": "refine32_all", "settings": {"refine": True, "refine_rois": 32,
                                          "iou_branch": True, "giou_weight": 1.0}},
    {"name": "refine32@vote", "from": "refine32", "inference": {"box_voting": 0.7}},
    {"name": "anchors5", "settings": {"anchor_sizes": [0.09, 0.18, 0.36, 0.72, 1.0]}},
    {"name": "refine32_all@nms0.8", "from": "refine32_all",
     "inference": {"nms_threshold": 0.8}},
    {"name": "default@nms0.8", "from": "default", "inference": {"nms_threshold": 0.8}},
    {"name": "default@vote", "from": "default", "inference": {"box_voting": 0.7}},
    {"name": "giou@vote", "from": "giou", "inference": {"box_voting": 0.7}},
    {"name": "giou@vote+nms0.75", "from": "giou",
     "inference": {"box_voting": 0.7, "nms_threshold": 0.75}},
    # issue 25: today's default (the budget), larger sizes, a pyramid, the preset
    {"name": "today", "settings": BUDGET},
    {"name": "size224", "settings": {"size": 224, "max_size": 384}},
    {"name": "size160", "settings": {"size": 160, "max_size": 274}},
    {"name": "pyramid", "settings": {"pyramid": [2, 3, 4, 5], "pyramid_sizes": [12, 24, 48, 96],
                                     "pyramid_channels": 64, "head_channels": 64}},
    {"name": "pyramid3456", "settings": {"pyramid": [3, 4, 5, 6],
                                         "pyramid_sizes": [12, 24, 48, 96],
                                         "pyramid_channels": 128, "head_channels": 128}},
    # the default's backbone (C2, C3) as a pyramid of two levels: its four
    # anchor sizes, 10 and 20 px at stride 4, 40 and 80 px at stride 8
    {"name": "pyramid23", "settings": {"pyramid": [2, 3], "pyramid_sizes": [10, 40],
                                       "pyramid_scales": [1, 2], "pyramid_channels": 64,
                                       "head_channels": 64}},
    # the default's choice on raccoon-tiled3 (160) on the two levels, with
    # the default's anchors at 160 (14.4 to 115 px)
    {"name": "size160-p23", "settings": {"size": 160, "max_size": 274, "pyramid": [2, 3],
                                         "pyramid_sizes": [14.4, 57.6], "pyramid_scales": [1, 2],
                                         "pyramid_channels": 64, "head_channels": 64}},
    {"name": "small-objects", "preset": "small-objects"},
    {"name": "small-objects-256", "preset": "small-objects", "settings": {"window": 256}},
    {"name": "small-objects-p23", "preset": "small-objects",
     "settings": {"pyramid": [2, 3], "pyramid_sizes": [10, 40], "pyramid_scales": [1, 2],
                  "pyramid_channels": 64, "head_channels": 64}},
    # issue 26: objectness from localisation quality
    {"name": "open-world", "preset": "open-world"},
    {"name": "open-world-plain", "preset": "open-world", "settings": {"head_norm": False}},
    {"name": "open-world-giou", "preset": "open-world",
     "settings": {"lambd": 0.0, "giou_weight": 1.0}},
    {"name": "open-world-1anchor", "preset": "open-world",     # OLN: one anchor a location
     "settings": {"anchor_sizes": [0.36], "anchor_ratios": [1.0]}},
]


def parse_value(text):
    """A setting's value: JSON where it parses (numbers, true, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_variant(spec):
    """``NAME:key=value,key=value`` -> ``{"name", "settings"}``. Commas inside
    a value (``anchor_sizes=[0.1,0.3]``) stay with it: a new pair starts only
    at ``,key=``."""
    name, _, rest = spec.partition(":")
    settings = {}
    for pair in re.split(r",(?=[A-Za-z_][A-Za-z0-9_]*=)", rest) if rest else []:
        key, eq, value = pair.partition("=")
        if not eq:
            raise SystemExit(f"quality: --variant {spec!r}: expected key=value, got {pair!r}")
        settings[key.strip()] = parse_value(value.strip())
    return {"name": name, "settings": settings}


def choose_variants(names, adhoc):
    known = {v["name"]: v for v in VARIANTS}
    chosen = []
    for name in [n for n in names.split(",") if n and n != "none"]:
        if name not in known:
            raise SystemExit(f"quality: unknown variant {name!r}; known: {', '.join(known)} "
                             "(or give --variant NAME:key=value,...)")
        chosen.append(known[name])
    chosen += [parse_variant(spec) for spec in adhoc]
    if len({v["name"] for v in chosen}) < len(chosen):
        raise SystemExit("quality: two variants have the same name")
    for variant in chosen:                      # a base is trained before what rescores it
        if "from" in variant and variant["from"] not in {v["name"] for v in chosen}:
            raise SystemExit(f"quality: {variant['name']} scores the runs of "
                             f"{variant['from']}: choose that variant too")
    return sorted(chosen, key=lambda v: "from" in v)


def variant_settings(variant, variants=None):
    """What identifies a variant's runs: its settings, or for an
    inference-only one its base's settings with its inference settings."""
    if "from" not in variant:
        if "preset" in variant:
            return dict(preset_settings(variant["preset"]), **variant.get("settings", {}))
        return variant["settings"]
    base = next(v for v in (variants or VARIANTS) if v["name"] == variant["from"])
    return dict(variant_settings(base, variants), **variant["inference"])

