"""Small data folders (VOC, COCO) and image files (pictures with known
pixels, JPEG bytes, PNGs with a planted header or EXIF orientation)."""
import io
import json
import os
import struct
import zlib

import numpy as onp
from PIL import Image

import rpn


def make_voc(root, objects, *, size=(64, 48), lists=None, extra_xml=""):
    """A VOC folder with one image an entry of ``objects``: name -> list of
    ``(class, xmin, ymin, xmax, ymax[, difficult])``, 1-based pixels as VOC
    writes them (``<difficult>`` only when given)."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    width, height = size
    for name, objs in objects.items():
        Image.new("RGB", size, (90, 120, 30)).save(os.path.join(root, "JPEGImages",
                                                                name + ".jpg"))
        body = "".join(
            f"<object><name>{c}</name>"
            + "".join(f"<difficult>{d}</difficult>" for d in difficult)
            + f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
              f"<ymax>{y1}</ymax></bndbox></object>"
            for c, x0, y0, x1, y1, *difficult in objs)
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write(f"<annotation>{extra_xml}<size><width>{width}</width><height>{height}"
                    f"</height><depth>3</depth></size>{body}</annotation>")
    for list_name, names in (lists or {"train": list(objects), "val": list(objects)}).items():
        with open(os.path.join(root, "ImageSets", "Main", list_name + ".txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
    return str(root)


def make_coco(folder, entries, *, name="instances.json", sizes=True):
    """A COCO file and its images: ``entries`` file name -> list of bboxes
    ``[x, y, w, h]`` of the class "cell"; images 30 wide, 20 high."""
    os.makedirs(folder, exist_ok=True)
    images, annotations = [], []
    for image_id, (file_name, boxes) in enumerate(entries.items(), 1):
        Image.new("RGB", (30, 20), (10, 20, 30)).save(os.path.join(folder, file_name))
        images.append(dict({"id": image_id, "file_name": file_name},
                           **({"height": 20, "width": 30} if sizes else {})))
        for bbox in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 1, "bbox": bbox, "iscrowd": 0})
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1, "name": "cell"}]}, f)
    return path


def write_image(path, size=(80, 100), seed=9):
    """A synthetic picture ``size`` (height, width) saved at ``path``."""
    Image.fromarray(rpn.SyntheticImages(1, *size, seed=seed)[0]).save(path)
    return str(path)


def rgb_array(height=48, width=32):
    """A smooth (h, w, 3) uint8 picture whose rows and columns all differ."""
    y, x = onp.mgrid[0:height, 0:width]
    return onp.stack([x * 7 % 256, y * 5 % 256, (x + y) * 3 % 256], -1).astype("uint8")


def save(path, img, fmt=None, **options):
    img.save(path, fmt, **options)
    return str(path)


def jpeg_bytes(array, quality=95):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_with_ihdr(width, height):
    """A tiny grey PNG whose IHDR is patched to ``width`` x ``height``,
    with a correct CRC (the image data stays 2x2)."""
    buf = io.BytesIO()
    Image.new("L", (2, 2), 7).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    body = bytearray(data[16:29])
    body[0:8] = struct.pack(">II", width, height)
    data[16:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)))
    return bytes(data)


def oriented_png(tmp_path, orientation, array, name="phone.png"):
    """``array`` saved as a PNG whose EXIF says ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(tmp_path / name, Image.fromarray(array), "PNG", exif=exif.tobytes())

