"""rpn.data.images: reading image files, every fault injected on small
generated files: broken files, every mode, EXIF orientation, Pillow's
truncated-images switch under threads and forks."""
import io
import os
import pickle
import signal
import time
import warnings

import numpy as onp
import pytest
from PIL import Image, ImageFile, ImageOps

from helpers.files import jpeg_bytes, oriented_png, png_with_ihdr, rgb_array, save
from rpn.data import images as images_module
from rpn.data.image_check import check_images
from rpn.data.images import BadImageError, TruncatedImageWarning, image_size, read_image

pytestmark = pytest.mark.usefixtures("truncated_switch_untouched")


def read_caught(path, **kwargs):
    """read_image's result and the warnings it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = read_image(path, **kwargs)
    return result, caught


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
