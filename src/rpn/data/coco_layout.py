"""Where COCO data lies: :func:`find_coco_split` finds a split's annotation
file and image folder in the layouts COCO data ships in (COCO's own
``annotations/instances_<split>2017.json`` beside ``<split>2017/``,
Roboflow's, one file), and :func:`write_coco` writes the synthetic set in
COCO's layout. :mod:`rpn.data.coco` reads the files.
"""
import glob
import json
import os

from PIL import Image

from .synthetic import SYNTHETIC_CLASSES, SyntheticImages

__all__ = ["find_coco_split", "write_coco"]


def write_coco(root, *, num_train=64, num_val=16, height=256, width=256, seed=0):
    """Write the synthetic set in the COCO layout: ``annotations/
    instances_train.json``, ``annotations/instances_val.json``, and the
    JPEG images ``train/<name>.jpg``, ``val/<name>.jpg`` (the images and
    boxes of :func:`rpn.write_voc` for the same arguments). Categories are
    :data:`rpn.SYNTHETIC_CLASSES` with ids 1, 2, 3. Returns ``root``."""
    sets = {"train": SyntheticImages(num_train, height, width, seed=seed),
            "val": SyntheticImages(num_val, height, width, seed=seed, offset=num_train)}
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"}
                  for k, name in enumerate(SYNTHETIC_CLASSES)]
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    image_id, ann_id = 0, 0
    for split, images in sets.items():
        os.makedirs(os.path.join(root, split), exist_ok=True)
        entries, annotations = [], []
        for i in range(len(images)):
            name = f"{split}_{i:05d}.jpg"
            image_id += 1
            Image.fromarray(images[i]).save(os.path.join(root, split, name), quality=95)
            entries.append({"id": image_id, "file_name": name, "height": height,
                            "width": width})
            for cls, x0, y0, x1, y1 in images.labels[i].astype(int).tolist():
                ann_id += 1
                w, h = x1 - x0, y1 - y0
                annotations.append({"id": ann_id, "image_id": image_id,
                                    "category_id": cls + 1, "bbox": [x0, y0, w, h],
                                    "area": w * h, "iscrowd": 0})
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump({"images": entries, "annotations": annotations,
                       "categories": categories}, f)
    return root


def _one(matches, what):
    if len(matches) > 1:
        raise ValueError(f"two matches for {what}: {matches[0]} and {matches[1]}; "
                         "keep one, or name the files")
    return matches[0] if matches else None


def find_coco_split(folder, split):
    """``(annotation_file, image_dir)`` of ``split`` in ``folder``, trying:

    a. ``annotations/instances_<split>*.json``, images in the first of
       ``<split>*/``, ``images/<split>*/``, ``images/`` that exists;
    b. Roboflow's ``<split>/_annotations.coco.json``, images beside it
       (``val`` and ``valid`` stand for each other);
    c. for ``split == "all"`` only: ``annotations.json``, or the single
       ``*.json`` in ``folder``, images in ``images/`` if it exists, else
       ``folder``.

    Nothing found: ``FileNotFoundError`` saying what was looked for; two
    matches at one step: ``ValueError`` naming both.
    """
    folder, tried = os.fspath(folder), []
    base, split_glob = glob.escape(folder), glob.escape(split)

    def matches(pattern, test):
        return sorted(p for p in glob.glob(os.path.join(base, pattern)) if test(p))

    pattern = os.path.join("annotations", f"instances_{split_glob}*.json")
    tried.append(os.path.join(folder, pattern))
    annotation = _one(matches(pattern, os.path.isfile), tried[-1])
    if annotation:
        candidates = [f"{split_glob}*", os.path.join("images", f"{split_glob}*")]
        for candidate in candidates:
            image_dir = _one(matches(candidate, os.path.isdir), os.path.join(folder, candidate))
            if image_dir:
                return annotation, image_dir
        if os.path.isdir(os.path.join(folder, "images")):
            return annotation, os.path.join(folder, "images")
        raise FileNotFoundError(
            f"found {annotation} but no image folder: looked for "
            + ", ".join(os.path.join(folder, c) + os.sep for c in candidates + ["images"]))
    aliases = {"val": ["val", "valid"], "valid": ["valid", "val"]}.get(split, [split])
    paths = [os.path.join(folder, name, "_annotations.coco.json") for name in aliases]
    tried.extend(paths)
    annotation = _one([p for p in paths if os.path.isfile(p)], " / ".join(paths))
    if annotation:
        return annotation, os.path.dirname(annotation)
    if split == "all":
        images = os.path.join(folder, "images")
        image_dir = images if os.path.isdir(images) else folder
        single = os.path.join(folder, "annotations.json")
        tried.extend([single, os.path.join(folder, "*.json")])
        if os.path.isfile(single):
            return single, image_dir
        annotation = _one(matches("*.json", os.path.isfile), tried[-1])
        if annotation:
            return annotation, image_dir
    raise FileNotFoundError(f"no COCO annotations for split {split!r} in {folder}: looked "
                            "for " + ", ".join(tried))
