"""rpn.images: every fault injected on small generated files."""
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib

import numpy as onp
import pytest
from PIL import Image, ImageFile, ImageOps

from rpn.data.images import BadImageError, TruncatedImageWarning, image_size, read_image
from rpn.data.image_check import ImageCheck, check_images
from rpn.data import image_check as check_module
from rpn.data import images as images_module



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


def read_caught(path, **kwargs):
    """read_image's result and the warnings it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = read_image(path, **kwargs)
    return result, caught


@pytest.fixture(autouse=True)
def truncated_switch_untouched():
    """No test may leave Pillow's global truncated-images switch changed."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    yield
    assert ImageFile.LOAD_TRUNCATED_IMAGES == before


# --- broken files ------------------------------------------------------------

def test_missing_file_names_it(tmp_path):
    path = str(tmp_path / "absent.jpg")
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        read_image(path)
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        image_size(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadImageError, match=r"empty\.jpg: empty file \(0 bytes\)") as info:
        read_image(path)
    assert isinstance(info.value, ValueError)
    assert info.value.path == str(path) and info.value.reason.startswith("empty file")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello, this is not a photo\n")
    with pytest.raises(BadImageError, match=r"notes\.jpg: not an image format.*b'hello, this"):
        read_image(path)
    html = tmp_path / "page.jpg"
    html.write_text("<!DOCTYPE html><html>403 Forbidden</html>")
    with pytest.raises(BadImageError, match=r"page\.jpg: text \(HTML"):
        read_image(html)
    lfs = tmp_path / "lfs.jpg"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    with pytest.raises(BadImageError, match="Git LFS pointer"):
        read_image(lfs)


def test_png_named_jpg_reads(tmp_path):
    array = rgb_array()
    path = save(tmp_path / "really_a_png.jpg", Image.fromarray(array), "PNG")
    out, caught = read_caught(path)
    assert out.dtype == onp.uint8 and out.shape == (48, 32, 3)
    assert out.flags.writeable and out.flags.c_contiguous
    onp.testing.assert_array_equal(out, array)
    assert caught == []


def test_jpeg_missing_its_last_bytes_reads_with_one_warning(tmp_path):
    data = jpeg_bytes(rgb_array(128, 64))
    full_path = tmp_path / "full.jpg"
    full_path.write_bytes(data)
    cut_path = tmp_path / "cut.jpg"
    cut_path.write_bytes(data[:len(data) // 2])
    full = read_image(full_path)
    out, caught = read_caught(cut_path)
    assert out.shape == full.shape == (128, 64, 3)
    assert len(caught) == 1
    assert caught[0].category is TruncatedImageWarning
    assert str(cut_path) in str(caught[0].message)
    # the part that is there decodes as in the whole file; JPEG fills the rest grey
    onp.testing.assert_array_equal(out[:16], full[:16])
    assert (out[-8:] == 128).all() and not (full[-8:] == 128).all()
    # only the EOI marker missing: the whole picture, with the warning
    eoi_path = tmp_path / "no_eoi.jpg"
    eoi_path.write_bytes(data[:-2])
    out, caught = read_caught(eoi_path)
    onp.testing.assert_array_equal(out, full)
    assert [w.category for w in caught] == [TruncatedImageWarning]


def test_png_cut_in_its_pixels_reads_with_warning(tmp_path):
    array = onp.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=onp.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", compress_level=0)
    data = buf.getvalue()
    path = tmp_path / "cut.png"
    path.write_bytes(data[:len(data) // 2])
    out, caught = read_caught(path)
    assert [w.category for w in caught] == [TruncatedImageWarning]
    assert str(path) in str(caught[0].message)
    onp.testing.assert_array_equal(out[:20], array[:20])     # lossless: exact
    assert (out[-10:] == 0).all()                           # PNG fills black


def test_png_missing_only_iend_reads_silently(tmp_path):
    """Documented: the pixel data is complete, so the image is whole."""
    array = rgb_array()
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    data = buf.getvalue()
    assert data.endswith(b"IEND\xaeB`\x82")
    path = tmp_path / "no_iend.png"
    path.write_bytes(data[:-12])
    out, caught = read_caught(path)
    onp.testing.assert_array_equal(out, array)
    assert caught == []


def test_file_cut_inside_its_header_is_bad(tmp_path):
    data = jpeg_bytes(rgb_array())
    path = tmp_path / "stub.jpg"
    path.write_bytes(data[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # and no truncation warning either
        with pytest.raises(BadImageError, match=r"stub\.jpg: the file ends early "
                                                r"\(truncated, 300 bytes\)"):
            read_image(path)
        buf = io.BytesIO()
        Image.fromarray(rgb_array()).save(buf, "PNG")
        png = tmp_path / "stub.png"
        png.write_bytes(buf.getvalue()[:40])
        with pytest.raises(BadImageError, match=r"stub\.png: starts like a PNG file.*40 bytes"):
            read_image(png)


def test_corrupt_jpeg_data_is_bad_and_not_read_as_truncated(tmp_path):
    data = jpeg_bytes(onp.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=onp.uint8))
    middle = len(data) // 2
    path = tmp_path / "scrambled.jpg"
    path.write_bytes(data[:middle] + b"\xff\xd8" + data[middle:])    # a stray SOI marker
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BadImageError, match=r"scrambled\.jpg: cannot decode its pixels: "
                                                "OSError: broken data stream"):
            read_image(path)


@pytest.mark.parametrize("width,height", [(0, 5), (5, 0)])
def test_header_with_zero_size(tmp_path, width, height):
    path = tmp_path / "flat.png"
    path.write_bytes(png_with_ihdr(width, height))
    with pytest.raises(BadImageError, match=rf"flat\.png: its header says {width}x{height} "
                                            "pixels"):
        read_image(path)
    with pytest.raises(BadImageError, match="header says"):
        image_size(path)


def test_decompression_bombs_are_refused(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(png_with_ihdr(9000, 8000))          # 72 Mpx: over our 64
    with pytest.raises(BadImageError, match=r"big\.png: 9000x8000 = 72000000 pixels, more "
                                            r"than the 64000000"):
        read_image(big)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_with_ihdr(20000, 20000))       # over Pillow's own limit
    with pytest.raises(BadImageError, match=r"huge\.png: refused as a decompression bomb"):
        image_size(huge)
    ok = tmp_path / "ok.png"
    ok.write_bytes(png_with_ihdr(8000, 8000))           # 64 Mpx: allowed, header only
    assert image_size(ok) == (8000, 8000)


def test_bad_image_error_pickles():
    error = pickle.loads(pickle.dumps(BadImageError("a/b.jpg", "empty file")))
    assert (error.path, error.reason, str(error)) == ("a/b.jpg", "empty file",
                                                      "a/b.jpg: empty file")


# --- modes -------------------------------------------------------------------

def one_row(mode, values, tmp_path, fmt, **options):
    img = Image.new(mode, (len(values), 1))
    img.putdata(values)
    path = save(tmp_path / f"img.{fmt.lower()}", img, fmt, **options)
    assert Image.open(path).mode == mode or (mode, Image.open(path).mode) == ("I;16L", "I;16")
    return read_image(path)


def grey(*values):
    return [[v, v, v] for v in values]


def test_mode_1_l_rgb(tmp_path):
    assert one_row("1", [0, 1], tmp_path, "PNG").tolist() == [grey(0, 255)]
    assert one_row("L", [0, 100, 255], tmp_path, "PNG").tolist() == [grey(0, 100, 255)]
    assert one_row("RGB", [(1, 2, 3), (250, 0, 9)], tmp_path, "PNG").tolist() == \
        [[[1, 2, 3], [250, 0, 9]]]


def test_mode_p(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 0, 255, 10, 20, 30])
    img.putdata([2, 0, 1])
    path = save(tmp_path / "p.png", img)
    assert read_image(path).tolist() == [[[10, 20, 30], [255, 0, 0], [0, 0, 255]]]
    # with a transparent entry: that entry shows white
    path = save(tmp_path / "pt.png", img, transparency=0)
    assert read_image(path).tolist() == [[[10, 20, 30], [255, 255, 255], [0, 0, 255]]]
    path = save(tmp_path / "pt.gif", img, transparency=1)
    assert read_image(path).tolist() == [[[10, 20, 30], [255, 0, 0], [255, 255, 255]]]


def test_mode_l_and_rgb_with_transparency_colour(tmp_path):
    assert one_row("L", [100, 101], tmp_path, "PNG", transparency=100).tolist() == \
        [grey(255, 101)]
    out = one_row("RGB", [(1, 2, 3), (1, 2, 4)], tmp_path, "PNG", transparency=(1, 2, 3))
    assert out.tolist() == [[[255, 255, 255], [1, 2, 4]]]


def test_cmyk_and_ycbcr_take_pillows_conversion(tmp_path):
    out = one_row("CMYK", [(0, 0, 0, 0), (0, 255, 255, 0), (0, 0, 0, 255)], tmp_path, "TIFF")
    assert out.tolist() == [[[255, 255, 255], [255, 0, 0], [0, 0, 0]]]
    out = one_row("YCbCr", [(128, 128, 128), (0, 128, 128)], tmp_path, "TIFF")
    assert out.tolist() == [grey(128, 0)]


def test_alpha_modes_composite_over_white(tmp_path):
    # transparent -> white, opaque -> itself, half (128) -> (c*128 + 255*127 + 127) // 255
    out = one_row("RGBA", [(200, 0, 0, 0), (10, 20, 30, 255), (0, 0, 0, 128)], tmp_path, "PNG")
    assert out.tolist() == [[[255, 255, 255], [10, 20, 30], [127, 127, 127]]]
    out = one_row("LA", [(0, 0), (60, 255), (255, 128)], tmp_path, "PNG")
    assert out.tolist() == [grey(255, 60, 255)]
    img = Image.new("PA", (2, 1))
    img.putpalette([0, 0, 0, 0, 200, 0])
    img.putdata([(0, 0), (1, 255)])
    path = save(tmp_path / "pa.tiff", img)
    assert Image.open(path).mode == "PA"
    assert read_image(path).tolist() == [[[255, 255, 255], [0, 200, 0]]]


@pytest.mark.parametrize("mode,fmt", [("I;16", "PNG"), ("I;16B", "TIFF"), ("I;16L", "TIFF"),
                                      ("I;16", "TIFF")])
def test_16_bit_grey_is_scaled(tmp_path, mode, fmt):
    values = [0, 128, 129, 257 * 100, 65534, 65535]
    out = one_row(mode, values, tmp_path, fmt)
    assert out.tolist() == [grey(0, 0, 1, 100, 255, 255)]   # not all white, not >> 8


def test_16_bit_native_order(tmp_path):
    img = Image.new("I;16N", (3, 1))
    img.putdata([257 * 7, 129, 65535])
    assert images_module._to_rgb(img, "mem").tolist() == [grey(7, 1, 255)]


def test_16_bit_transparency_value_is_white(tmp_path):
    out = one_row("I;16", [257 * 3, 257 * 9], tmp_path, "PNG", transparency=257 * 3)
    assert out.tolist() == [grey(255, 9)]


def test_32_bit_integer_is_16_bit_scale_clipped(tmp_path):
    out = one_row("I", [-5, 0, 257 * 100, 65535, 70000], tmp_path, "TIFF")
    assert out.tolist() == [grey(0, 0, 100, 255, 255)]


def test_float_images(tmp_path):
    # largest value <= 1: a [0, 1] image, scaled by 255 (0.4 * 255 = 102)
    assert one_row("F", [0.0, 0.4, 1.0, -0.2], tmp_path, "TIFF").tolist() == \
        [grey(0, 102, 255, 0)]
    # otherwise values are pixels: rounded and clipped
    assert one_row("F", [-3.0, 0.4, 100.4, 300.0], tmp_path, "TIFF").tolist() == \
        [grey(0, 0, 100, 255)]
    # NaN is 0 and does not count for the maximum; infinity does
    assert one_row("F", [float("nan"), 1.4, float("inf")], tmp_path, "TIFF").tolist() == \
        [grey(0, 1, 255)]
    assert one_row("F", [float("nan"), 0.4], tmp_path, "TIFF").tolist() == [grey(0, 102)]


def test_lab_takes_pillows_conversion(tmp_path):
    img = Image.new("LAB", (1, 1), (255, 128, 128))
    path = save(tmp_path / "lab.tiff", img)
    out = read_image(path)
    assert out.tolist() == onp.asarray(img.convert("RGB")).tolist()
    assert (out >= 250).all()       # L = 100 %: white


def test_multi_frame_file_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 3), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = save(tmp_path / "anim.gif", frames[0], save_all=True, append_images=frames[1:])
    assert Image.open(path).n_frames == 2
    out = read_image(path)
    assert out.shape == (3, 4, 3) and (out == [255, 0, 0]).all()


# --- EXIF orientation --------------------------------------------------------

def oriented_png(tmp_path, orientation, array, name="phone.png"):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(tmp_path / name, Image.fromarray(array), "PNG", exif=exif.tobytes())


def test_orientation_6_without_expected_size_is_applied(tmp_path):
    array = rgb_array(6, 10)                            # 10 wide, 6 tall as stored
    path = oriented_png(tmp_path, 6, array)
    out = read_image(path)
    assert out.shape == (10, 6, 3)
    onp.testing.assert_array_equal(out, onp.rot90(array, -1))    # turned clockwise
    assert image_size(path) == (10, 6)


def test_orientation_6_with_expected_sizes(tmp_path):
    array = rgb_array(6, 10)
    path = oriented_png(tmp_path, 6, array)
    # the annotation saw the photo upright: turn it
    onp.testing.assert_array_equal(read_image(path, expected_size=(10, 6)),
                                   onp.rot90(array, -1))
    assert image_size(path, expected_size=(10, 6)) == (10, 6)
    # the annotation saw the stored pixels: keep them
    onp.testing.assert_array_equal(read_image(path, expected_size=(6, 10)), array)
    assert image_size(path, expected_size=(6, 10)) == (6, 10)
    # neither
    with pytest.raises(BadImageError, match=r"phone\.png: annotation says 7x12, image is 10x6"
                                            r" \(6x10 with its EXIF orientation 6"):
        read_image(path, expected_size=(12, 7))
    with pytest.raises(BadImageError, match="annotation says 7x12"):
        image_size(path, expected_size=(12, 7))


def test_orientation_6_jpeg_like_a_phone(tmp_path):
    array = onp.zeros((16, 32, 3), onp.uint8)
    array[:, :16] = (250, 0, 0)                         # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path / "IMG_0001.JPG", Image.fromarray(array), "JPEG", quality=95,
                exif=exif.tobytes())
    out = read_image(path)
    assert out.shape == (32, 16, 3)
    assert out[2, 8, 0] > 200 and out[-2, 8, 0] < 50    # red is on top once turned


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillows_exif_transpose(tmp_path, orientation):
    array = rgb_array(6, 10)
    path = oriented_png(tmp_path, orientation, array)
    expected = onp.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    out = read_image(path)
    onp.testing.assert_array_equal(out, expected)
    assert image_size(path) == expected.shape[:2]


def test_square_photo_with_orientation_6_is_turned(tmp_path):
    """Both sizes match a square annotation: the transpose wins."""
    array = rgb_array(8, 8)
    path = oriented_png(tmp_path, 6, array)
    onp.testing.assert_array_equal(read_image(path, expected_size=(8, 8)),
                                   onp.rot90(array, -1))


def test_same_size_mismatch_without_orientation(tmp_path):
    path = save(tmp_path / "plain.png", Image.fromarray(rgb_array(6, 10)))
    assert read_image(path, expected_size=(6, 10)).shape == (6, 10, 3)
    with pytest.raises(BadImageError, match=r"annotation says 6x10, image is 10x6$"):
        read_image(path, expected_size=(10, 6))


def test_expected_size_must_be_positive_integers(tmp_path):
    path = save(tmp_path / "plain.png", Image.fromarray(rgb_array(6, 10)))
    for wrong in [(0, 10), (6,), (6.5, 10), "6x10"]:
        with pytest.raises(ValueError, match="expected_size must be"):
            read_image(path, expected_size=wrong)
    assert read_image(path, expected_size=(onp.int64(6), 10.0)).shape == (6, 10, 3)


# --- check_images ------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    """Good and bad files, in a known order, with the expected verdicts."""
    good = save(tmp_path / "a_good.jpg", Image.fromarray(rgb_array()), "JPEG")
    empty = tmp_path / "b_empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "c_text.jpg"
    text.write_text("not a picture")
    data = jpeg_bytes(rgb_array(64, 64))
    cut = tmp_path / "d_cut.jpg"
    cut.write_bytes(data[:len(data) // 2])
    stub = tmp_path / "e_stub.jpg"
    stub.write_bytes(data[:200])
    turned = oriented_png(tmp_path, 6, rgb_array(6, 10), "f_turned.png")
    wrong = save(tmp_path / "g_wrong_size.png", Image.fromarray(rgb_array(6, 10)))
    flat = tmp_path / "h_flat.png"
    flat.write_bytes(png_with_ihdr(0, 3))
    paths = [good, str(empty), str(text), str(cut), str(stub), turned, wrong, str(flat),
             str(tmp_path / "i_missing.jpg")]
    expected = [(48, 32), None, None, None, None, (6, 10), (20, 20), None, None]
    return paths, expected


@pytest.mark.parametrize("workers", [0, 2])
def test_check_images_lists_every_bad_file_in_order(folder, workers, capsys):
    paths, expected = folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = check_images(paths, expected, num_workers=workers, progress=False)
    assert isinstance(result, ImageCheck)
    assert result.sizes == [(48, 32), None, None, (64, 64), None, (6, 10), None, None, None]
    assert [p for p, _ in result.bad] == [paths[i] for i in (1, 2, 4, 6, 7, 8)]
    reasons = dict(result.bad)
    assert reasons[paths[1]].startswith("empty file")
    assert reasons[paths[2]].startswith("not an image format")
    assert reasons[paths[4]].startswith("the file ends early")
    assert reasons[paths[6]] == "annotation says 20x20, image is 10x6"
    assert reasons[paths[7]].startswith("its header says 0x3 pixels")
    assert reasons[paths[8]] == "file not found"
    assert result.truncated == [paths[3]]
    assert len(caught) == 1 and caught[0].category is TruncatedImageWarning
    assert paths[3] in str(caught[0].message)
    assert capsys.readouterr().err == ""


def test_check_images_without_expected_sizes_applies_orientation(folder):
    paths, _ = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedImageWarning)
        result = check_images(paths, num_workers=0, progress=False)
    assert result.sizes[5] == (10, 6) and result.sizes[6] == (6, 10)
    assert [p for p, _ in result.bad] == [paths[i] for i in (1, 2, 4, 7, 8)]


def test_check_images_progress_bar_on_stderr(folder, capsys):
    paths, _ = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedImageWarning)
        check_images(paths[:1], num_workers=0, desc="scanning photos")
    captured = capsys.readouterr()
    assert "scanning photos" in captured.err and "1/1" in captured.err
    assert captured.out == ""


def test_check_images_arguments(folder):
    paths, _ = folder
    with pytest.raises(ValueError, match="2 expected sizes for 9 paths"):
        check_images(paths, [None, None], progress=False)
    with pytest.raises(ValueError, match="num_workers"):
        check_images(paths, num_workers=-1, progress=False)
    with pytest.raises(ValueError, match=r"expected_sizes\[1\]"):
        check_images(paths[:2], [None, (0, 4)], progress=False)
    assert check_images([], progress=False) == ImageCheck([], [], [])


def test_check_matches_read_image(folder):
    """check_images (JPEGs decoded at 1/8) agrees with a full read."""
    paths, expected = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedImageWarning)
        result = check_images(paths, expected, num_workers=0, progress=False)
        for path, size, stated in zip(paths, result.sizes, expected):
            try:
                got = read_image(path, expected_size=stated).shape[:2]
            except (BadImageError, FileNotFoundError):
                got = None
            assert got == size, path


def test_truncated_switch_left_as_it_was(tmp_path):
    data = jpeg_bytes(rgb_array(64, 64))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) // 2])
    stub = tmp_path / "stub.jpg"
    stub.write_bytes(data[:200])
    for before in (False, True):
        ImageFile.LOAD_TRUNCATED_IMAGES = before
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncatedImageWarning)
                read_image(cut)
                assert ImageFile.LOAD_TRUNCATED_IMAGES is before
                with pytest.raises(BadImageError):
                    read_image(stub)
                assert ImageFile.LOAD_TRUNCATED_IMAGES is before
                check_images([str(cut), str(stub)], num_workers=0, progress=False)
                assert ImageFile.LOAD_TRUNCATED_IMAGES is before
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_threads_never_read_a_truncated_file_silently(tmp_path):
    """One thread's retry switches Pillow's flag on; no other read in the
    process may see it on (it would take a truncated file for a whole one)."""
    import threading
    data = jpeg_bytes(onp.random.default_rng(3).integers(0, 256, (256, 256, 3),
                                                         dtype=onp.uint8))
    paths = []
    for i in range(4):
        path = tmp_path / f"cut{i}.jpg"
        path.write_bytes(data[:len(data) // 2 + i])
        paths.append(str(path))
    verdicts = []

    def read_many(path):
        for _ in range(40):
            verdicts.append(images_module._read(path, None, "pixels")[2])

    threads = [threading.Thread(target=read_many, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(verdicts) == 160 and all(verdicts)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_forked_during_a_retry_starts_clean(tmp_path):
    """A process forked while another thread retries a truncated file
    (flag on, guard held) gets the flag as it was and a free guard."""
    data = jpeg_bytes(rgb_array(64, 64))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) // 2])
    with images_module._guard.truncated_allowed():
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
        pid = os.fork()
        if pid == 0:    # the child: report by exit code, never return into pytest
            code = 3
            try:
                clean = ImageFile.LOAD_TRUNCATED_IMAGES is False
                code = 0 if clean and images_module._read(str(cut), None, "pixels")[2] else 2
            finally:
                os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the image guard")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# --- worker processes --------------------------------------------------------

def _worker_state(_):
    """In a pool worker: its parent-death signal (Linux) and SIGINT handler."""
    import ctypes
    sig = ctypes.c_int(-1)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)   # PR_GET_PDEATHSIG
    return sig.value, signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_pool_initializer_sets_up_workers():
    import multiprocessing
    with multiprocessing.get_context().Pool(1, initializer=check_module._init_worker) as pool:
        pdeathsig, ignores_sigint = pool.map(_worker_state, [0])[0]
    assert ignores_sigint
    if sys.platform.startswith("linux"):
        assert pdeathsig == signal.SIGKILL


_CHILD = """
import sys
from rpn.data.image_check import check_images
paths = [l.strip() for l in open(sys.argv[1])]
check_images(paths, num_workers=2, progress=False)
"""


def _busy_child(tmp_path):
    """A process checking many images with 2 workers, and its workers."""
    psutil = pytest.importorskip("psutil")
    big = save(tmp_path / "big.jpg", Image.fromarray(onp.random.default_rng(0).integers(
        0, 256, (1200, 1600, 3), dtype=onp.uint8)), "JPEG")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([big] * 5000))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(listing)],
                             start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    workers = []
    while len(workers) < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
        workers = psutil.Process(child.pid).children()
    assert len(workers) == 2, child.stderr.read().decode()
    time.sleep(0.5)     # well into the checks
    return psutil, child, workers


def _gone(psutil, process):
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_ctrl_c_stops_the_check_and_its_workers(tmp_path):
    psutil, child, workers = _busy_child(tmp_path)
    os.killpg(child.pid, signal.SIGINT)      # what a terminal's Ctrl-C does
    try:
        child.wait(timeout=20)
    finally:
        child.kill()
    stderr = child.stderr.read()
    # the parent's traceback only: the workers ignore the signal
    assert b"KeyboardInterrupt" in stderr and b"PoolWorker" not in stderr, stderr
    deadline = time.monotonic() + 10
    while not all(_gone(psutil, w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(psutil, w) for w in workers)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_parent(tmp_path):
    psutil, child, workers = _busy_child(tmp_path)
    child.kill()
    child.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(psutil, w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if not _gone(psutil, w)]
    for w in alive:
        w.kill()
    assert alive == []


def test_a_jpeg_is_decoded_reduced_when_less_is_wanted(tmp_path):
    """read_image_at decodes a JPEG at 1/2, 1/4 or 1/8 while it stays at
    least as large as wanted (Pillow's draft mode), and says the image's
    own size; a PNG, and a want as large as the image, decode whole."""
    from rpn.data.images import read_image_at
    rng = onp.random.default_rng(0)
    pixels = rng.integers(0, 255, (1080, 1920, 3), dtype="uint8")
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=90)
    Image.fromarray(pixels[:270, :480]).save(tmp_path / "small.png")
    wanted = []
    image, size = read_image_at(str(tmp_path / "big.jpg"),
                                lambda h, w: wanted.append((h, w)) or (112, 199))
    assert size == (1080, 1920) and wanted == [(1080, 1920)]
    assert image.shape == (135, 240, 3)                    # an eighth, still >= 112 x 199
    image, size = read_image_at(str(tmp_path / "big.jpg"), lambda h, w: (300, 600))
    assert image.shape == (540, 960, 3) and size == (1080, 1920)
    image, size = read_image_at(str(tmp_path / "big.jpg"), lambda h, w: (h, w))
    assert image.shape == (1080, 1920, 3)
    image, size = read_image_at(str(tmp_path / "small.png"), lambda h, w: (10, 10))
    assert image.shape == (270, 480, 3) and size == (270, 480)
