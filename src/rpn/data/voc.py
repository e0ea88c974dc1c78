"""Reading VOC-format detection folders.

The chapter's companion section "The VOC detection dataset"
(``read_voc_images``, ``read_voc_detection_labels``,
``load_data_voc_detection``). Works on any VOC-layout tree::

    VOC_DIR/Annotations/<name>.xml
    VOC_DIR/JPEGImages/<name>.jpg
    VOC_DIR/ImageSets/Main/<class>_<split>.txt   (per-class lists, optional)
    VOC_DIR/ImageSets/Main/<split>.txt           (plain lists)

This is an edge of the package: labels are pixels here, rows ``[class,
xmin - 1, ymin - 1, xmax - 1, ymax - 1]`` (VOC is 1-based; the chapter
subtracts 1), and :class:`rpn.DetectionDataset` normalises them.
Annotation files come from elsewhere: XML is parsed without entity
expansion (defusedxml) and at a bounded size (:mod:`rpn.data.voc_xml`, which
also has the rules for boxes without area and boxes past the edge), and
list entries that would leave the folder by their letters (a ``/``, a
backslash, a drive letter, ``..``) are refused. Image files in
``JPEGImages/`` may be symbolic links (followed; a dangling link or a
loop is named as a bad file when the images are checked).
"""
import codecs
import collections
import os
import re
import warnings

from ..runs.fileio import NotRegularFileError, open_regular, shown
from .image_set import Edit, ImageSet, LeftOut, subset
from .images import IMAGE_EXTENSIONS, read_image
from .loader import make_loader
from .preprocess import Resize
from .reports import warn_edits
from .voc_xml import MAX_XML_BYTES as _MAX_XML_BYTES
from .voc_xml import parse_annotation, read_xml

__all__ = ["read_voc_images", "read_voc_detection_labels", "list_voc_split",
           "read_voc_split", "find_classes",
           "load_data_voc_detection", "VOC_CLASSES", "VOC_DEFAULT_DIR"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor")
#: Where the chapter's data lives (d2l's download folder).
VOC_DEFAULT_DIR = os.path.join("..", "data", "VOCdevkit", "VOC2012")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _name_problem(name):
    """Why the list entry ``name`` is refused, or ``None``: names must be
    plain file names inside the dataset folder."""
    if (not name or os.path.isabs(name) or "/" in name or "\\" in name
            or name in (".", "..") or "\x00" in name or _DRIVE.match(name)):
        return (f"refusing image name {name!r}: names must be plain file names inside "
                "the dataset folder")
    return None


def _check_name(name, source):
    problem = _name_problem(name)
    if problem:
        raise ValueError(f"{source}: {problem}")
    return name


_SHOWN_LINES = 20           # bad lines of one list named before "and N more"


def _read_list(path):
    """``(names, bad)``: the positives of an ``ImageSets`` list (lines
    ``name`` or ``name flag``; a flag of -1 or 0 is not a positive), and
    one ``(where, reason)`` a bad line (not UTF-8, not of that form, a name
    that would leave the folder), at most :data:`_SHOWN_LINES` of them and
    then one that counts the rest."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image set list not found: {path}") from None
    except NotRegularFileError as error:
        raise ValueError(f"{shown(path)}: {error.kind}, not a regular file; expected an "
                         "image set list") from None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(_MAX_XML_BYTES * 64 + 1)
    if len(raw) > _MAX_XML_BYTES * 64:
        raise ValueError(f"{path}: larger than {_MAX_XML_BYTES * 64} bytes, refused")
    if raw.startswith(codecs.BOM_UTF8):       # Windows editors' UTF-8 mark
        raw = raw[len(codecs.BOM_UTF8):]
    names, bad = [], []
    for number, line in enumerate(raw.splitlines(), 1):
        where = f"{shown(path)}, line {number}"
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as error:
            bad.append((where, f"not UTF-8 text ({error.reason} at byte {error.start}); "
                               "save the list as UTF-8"))
            continue
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2 or (len(fields) == 2 and fields[1] not in ("1", "0", "-1")):
            bad.append((where, f"expected 'name' or 'name 1|0|-1', got {line.strip()!r}"))
        elif _name_problem(fields[0]):
            bad.append((where, _name_problem(fields[0])))
        elif len(fields) == 1 or fields[1] == "1":
            names.append(fields[0])
    if len(bad) > _SHOWN_LINES:
        bad[_SHOWN_LINES:] = [(shown(path), f"and {len(bad) - _SHOWN_LINES} more bad lines")]
    return names, bad


def read_voc_images(voc_dir, image_sets, *, lazy=False):
    """Images named in ``ImageSets/<set>`` lists (e.g. ``"Main/cat_train.txt"``).

    Returns ``(images, names)``: decoded (h, w, 3) uint8 arrays, or their
    file paths when ``lazy`` (what the loaders use, so nothing is decoded
    before a batch needs it). Names listed in several sets appear once.
    """
    if isinstance(image_sets, str):
        image_sets = [image_sets]
    names = _list_names(voc_dir, image_sets)
    paths = _image_paths(voc_dir, names)
    missing = [name for name, path in zip(names, paths) if path is None]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed image(s) absent from "
                                f"{os.path.join(voc_dir, 'JPEGImages')}: {missing[:10]}"
                                f"{' ...' if len(missing) > 10 else ''}")
    images = paths if lazy else [read_image(p) for p in paths]
    return images, names


def _list_names(voc_dir, image_sets, *, skip_bad=False, warn=True):
    """The names of the lists ``image_sets``, each once. Bad lines raise
    one error that lists them all, or (``skip_bad``) are left out, with one
    warning that lists them (``warn``)."""
    names, seen, bad = [], set(), []
    for image_set in image_sets:
        found, wrong = _read_list(os.path.join(voc_dir, "ImageSets", image_set))
        bad += wrong
        for name in found:
            if name not in seen:
                seen.add(name)
                names.append(name)
    if bad and (warn or not skip_bad):
        _report(bad, skip_bad, "line(s) of image lists", shown_names=False)
    return names


def _image_paths(voc_dir, names):
    """The image file of each name in ``JPEGImages/``: ``<name>.jpg`` as
    VOC has it, otherwise ``<name>`` with another image extension in any
    case (``.JPG``, ``.jpeg``, ``.png``, ...; ``.jpg`` first, then in
    :data:`rpn.data.images.IMAGE_EXTENSIONS` order). ``None`` where there is none."""
    folder = os.path.join(voc_dir, "JPEGImages")
    by_stem = None
    paths = []
    for name in names:
        path = os.path.join(folder, name + ".jpg")
        if not os.path.isfile(path):
            if by_stem is None:      # list the folder once, only when needed
                by_stem = {}
                for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                    stem, ext = os.path.splitext(entry)
                    if ext.lower() in IMAGE_EXTENSIONS:
                        by_stem.setdefault(stem, []).append(entry)
            found = sorted(by_stem.get(name, []), key=lambda e: IMAGE_EXTENSIONS.index(
                os.path.splitext(e)[1].lower()))
            path = os.path.join(folder, found[0]) if found else None
        paths.append(path)
    return paths


def _read_labels(voc_dir, names, classes, keep_difficult, clip=False):
    """Labels (``None`` where bad), stated sizes, the problems found, and
    the :class:`rpn.data.image_set.Edit` entries (objects dropped, boxes clipped)."""
    labels, sizes, problems, edits, near = [], [], [], [], collections.Counter()
    wanted = {_folded(c): c for c in classes}
    for index, name in enumerate(names):
        path = os.path.join(voc_dir, "Annotations", _check_name(name, "image_fns") + ".xml")
        try:
            label, size, ignored, changed = parse_annotation(path, classes, keep_difficult,
                                                             clip)
        except (ValueError, FileNotFoundError) as error:
            labels.append(None)
            sizes.append(None)
            problems.append((name, str(error)))
            continue
        labels.append(label)
        sizes.append(size)
        edits.extend(Edit(index, kind, text) for kind, text in changed)
        near.update(n for n in ignored if _folded(n) in wanted)
    if near:
        listing = ", ".join(f"{n!r} ({count}, not {wanted[_folded(n)]!r})"
                            for n, count in sorted(near.items()))
        warnings.warn(f"{voc_dir}: objects left out because class names are exact (case "
                      f"and spaces count): {listing}. Rename them in the annotations, or "
                      "give those names as classes")
    return labels, sizes, problems, edits


def _folded(name):
    """A class name without case and inner spaces: how near misses are found."""
    return "".join(name.split()).casefold()


def _report(problems, skip_bad, what, *, shown_names=True):
    """One error listing every problem, or (``skip_bad``) one warning.
    Names are printed by :func:`rpn.runs.fileio.shown` (``shown_names``:
    they are already)."""
    if not problems:
        return
    listing = "\n  ".join(f"{shown(name) if shown_names else name}: {reason}"
                          for name, reason in problems)
    if not skip_bad:
        raise ValueError(f"{len(problems)} bad {what}:\n  {listing}\n"
                         "Fix or remove them, or skip them (skip_bad=True, --skip-bad)")
    warnings.warn(f"skipping {len(problems)} bad {what}:\n  {listing}")


def read_voc_detection_labels(voc_dir, image_fns, classes, *, keep_difficult=True,
                              skip_bad=False):
    """Parse ``Annotations/<name>.xml`` for each name in ``image_fns``.

    Keeps objects whose name is in ``classes``; returns one (n, 5) float32
    array an image, rows ``[class_index, xmin - 1, ymin - 1, xmax - 1,
    ymax - 1]`` in pixels. ``keep_difficult=False`` drops objects marked
    ``difficult``. Objects whose box has no width or height are dropped
    with one warning (their images stay). Missing, malformed or incomplete
    files, or boxes outside their image, raise one ``ValueError`` that lists
    every bad file; with ``skip_bad=True`` one warning lists them and those
    images get ``None``.
    """
    image_fns = list(image_fns)
    labels, sizes, problems, edits = _read_labels(voc_dir, image_fns, list(classes),
                                                  keep_difficult)
    _report(problems, skip_bad, "annotation file(s)")
    warn_edits(ImageSet(image_fns, labels, image_fns, image_fns, sizes, tuple(classes),
                        tuple(edits)), voc_dir)
    return labels


def _split_lists(voc_dir, split, classes):
    main = os.path.join(voc_dir, "ImageSets", "Main")
    per_class = [os.path.join("Main", f"{c}_{split}.txt") for c in classes]
    if classes and all(os.path.isfile(os.path.join(voc_dir, "ImageSets", p))
                       for p in per_class):
        return per_class
    if os.path.isfile(os.path.join(main, f"{split}.txt")):
        return [os.path.join("Main", f"{split}.txt")]
    raise FileNotFoundError(
        f"no list for split {split!r} in {main}: expected {split}.txt or "
        f"<class>_{split}.txt for each of {list(classes)}")


def read_voc_split(voc_dir, split, classes, *, keep_difficult=True, skip_bad=False,
                   clip_boxes=False, warn=True):
    """One split of a VOC-layout folder as an :class:`rpn.ImageSet`: image
    paths, pixel labels, names as ids, and the sizes the annotations state.

    Reads the per-class lists ``<class>_<split>.txt`` (positives only) when
    every class has one, otherwise the plain ``<split>.txt``. Bad annotation
    files and listed images that are absent raise one error listing them
    all, or are left out with a warning (``skip_bad``). Objects whose box
    has no area are dropped (the image stays); ``clip_boxes`` clips boxes
    more than 1 pixel past the stated image size instead of refusing them;
    ``warn``: one warning for each (:func:`rpn.data.reports.warn_edits`; they are
    in ``edits``). Images without objects stay (see :func:`list_voc_split`).
    """
    classes = list(classes)
    names = _list_names(voc_dir, _split_lists(voc_dir, split, classes), skip_bad=skip_bad)
    paths = _image_paths(voc_dir, names)
    labels, sizes, problems, edits = _read_labels(voc_dir, names, classes, keep_difficult,
                                                  clip_boxes)
    reasons = collections.defaultdict(list)       # one line a name, in list order
    for name, reason in problems:
        reasons[name].append(reason)
    for i, (name, path) in enumerate(zip(names, paths)):
        if path is None:
            labels[i] = None
            reasons[name].append(f"no image {name}.jpg (or another image extension) in "
                                 f"{os.path.join(voc_dir, 'JPEGImages')}")
    _report([(n, "; ".join(reasons[n])) for n in names if n in reasons], skip_bad,
            "annotation file(s)" if all(paths) else "image(s) or annotation file(s)")
    keep = [i for i, label in enumerate(labels) if label is not None]
    every = ImageSet(paths, labels, names, [p and os.path.basename(p) for p in paths], sizes,
                     tuple(classes), tuple(edits))
    bad = len(names) - len(keep)
    found = subset(every, keep, left_out=(LeftOut(
        "bad", bad, None, "with bad annotations or no image file (--skip-bad)"),) if bad else ())
    if warn:
        warn_edits(found, voc_dir)
    return found


def list_voc_split(voc_dir, split, classes, *, keep_difficult=True, skip_bad=False):
    """Image paths and pixel labels of one split of a VOC-layout folder
    (:func:`read_voc_split`'s ``images`` and ``labels``), images without an
    object included (the training loader leaves them out)."""
    found = read_voc_split(voc_dir, split, classes, keep_difficult=keep_difficult,
                           skip_bad=skip_bad)
    return list(found.images), list(found.labels)


def find_classes(voc_dir, splits=("train", "val"), *, skip_bad=False):
    """The object names of the annotations of the images listed in the plain
    split lists, sorted: the classes a folder has, for when none are given.
    Unreadable annotation files raise one error listing them all, or with
    ``skip_bad`` are passed over (reading the splits lists them)."""
    names, problems = set(), []
    for split in splits:
        listing = os.path.join(voc_dir, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(listing):
            continue
        for name in _list_names(voc_dir, [os.path.join("Main", f"{split}.txt")],
                                skip_bad=skip_bad, warn=False):
            try:
                root = read_xml(os.path.join(voc_dir, "Annotations", name + ".xml"))
            except (ValueError, FileNotFoundError) as error:
                problems.append((name, str(error)))
                continue
            names.update((obj.findtext("name") or "").strip() for obj in root.iter("object"))
    if not skip_bad:
        _report(problems, False, "annotation file(s)")
    names.discard("")
    if not names:
        raise ValueError(f"no object in the {list(splits)} annotations of {voc_dir}")
    return sorted(names)


def _download_voc2012():
    from d2l import mxnet as d2l
    try:
        return os.path.join(d2l.download_extract("voc2012", os.path.join(
            "VOCdevkit", "VOC2012")))
    except Exception as error:
        raise RuntimeError(
            f"downloading VOC2012 failed ({error}); download "
            "VOCtrainval_11-May-2012.tar by hand, extract it, and pass "
            "voc_dir=<...>/VOCdevkit/VOC2012") from error


def load_data_voc_detection(batch_size, height, width, classes=("cat", "dog"), *,
                            voc_dir=VOC_DEFAULT_DIR, download=False,
                            splits=("train", "val"), keep_difficult=True,
                            skip_bad=False, augment=True, num_workers=0,
                            seed=0, shard=None):
    """Train and validation loaders over a VOC-layout folder.

    Each yields ``(X (B, 3, height, width), Y (B, G, 5))``: images resized
    and normalised, labels normalised to ``[0, 1]`` and padded with class
    ``-1`` (chapter's conventions). Training images without an object of
    ``classes`` are dropped (the count is reported); the training loader
    shuffles, augments (flip, crop; ``augment``) and drops its last
    incomplete batch (:func:`rpn.data.loader.make_loader`, the package's one
    loader factory). ``num_workers`` processes decode images as batches
    need them. ``shard=(rank, parts)`` splits the training set for
    distributed training.

    Departs from the chapter's draft, which hard-coded the folder: the
    folder is ``voc_dir`` (default the chapter's ``../data/VOCdevkit/VOC2012``),
    and the VOC2012 download happens only with ``download=True``.
    """
    classes = list(classes)
    if not os.path.isdir(voc_dir):
        if not download:
            raise FileNotFoundError(
                f"VOC folder not found: {voc_dir!r}. Pass voc_dir= a folder with "
                "Annotations/, JPEGImages/ and ImageSets/Main/, or download=True "
                "to fetch VOC2012 (2 GB)")
        voc_dir = _download_voc2012()
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        if not os.path.isdir(os.path.join(voc_dir, sub)):
            raise FileNotFoundError(f"{voc_dir!r} is not a VOC-layout folder: "
                                    f"{sub}/ is missing")
    train_split, val_split = splits
    options = dict(keep_difficult=keep_difficult, skip_bad=skip_bad)
    train_paths, train_labels = list_voc_split(voc_dir, train_split, classes, **options)
    val_paths, val_labels = list_voc_split(voc_dir, val_split, classes, **options)
    found = {int(c) for lab in train_labels + val_labels for c in lab[:, 0]}
    missing = [c for k, c in enumerate(classes) if k not in found]
    if missing:
        raise ValueError(f"no object of class(es) {missing} in the {splits} "
                         f"splits of {voc_dir}; check the class names")
    most = max(len(lab) for lab in train_labels + val_labels)
    options = dict(num_workers=num_workers, max_objects=most, with_info=False)
    resize = Resize.fixed_size(height, width)
    return (make_loader(train_paths, train_labels, resize, batch_size, train=True,
                        augment=augment, seed=seed, shard=shard, **options),
            make_loader(val_paths, val_labels, resize, batch_size, train=False, **options))
