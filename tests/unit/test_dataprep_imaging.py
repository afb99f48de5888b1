"""Image decoding, resizing and failure classification on generated files."""

from __future__ import annotations

import io

import pytest
from dataprep_fixtures import write_jpeg
from mmft_dataprep.imaging import fit_size, prepare_image, resize_image
from mmft_dataprep.options import ImageSettings
from mmft_dataprep.quality import psnr, reference_resize
from PIL import Image


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    return write_jpeg(tmp_path_factory.mktemp("img") / "large.jpg", 2400, 1600, seed=3)


def test_fit_keeps_aspect_and_never_upscales():
    assert fit_size(6000, 4000, ImageSettings(size=512)) == (512, 341)
    assert fit_size(4000, 6000, ImageSettings(size=512)) == (341, 512)
    assert fit_size(300, 200, ImageSettings(size=512)) == (300, 200)
    assert fit_size(6000, 4000, ImageSettings(size=512, resize_mode="crop")) == (512, 512)
    assert fit_size(300, 200, ImageSettings(size=512, resize_mode="crop")) == (200, 200)


def test_fast_path_matches_a_full_resolution_lanczos_resize(large_jpeg, tmp_path):
    settings = ImageSettings(size=512)
    fast, source_size = resize_image(large_jpeg, settings)
    assert source_size == (2400, 1600) and fast.size == (512, 341) and fast.mode == "RGB"
    assert psnr(fast, reference_resize(large_jpeg, fast.size)) > 35.0


def test_crop_mode_takes_the_centre_square(tmp_path):
    # Left third red, middle green, right blue: a centre square of a 3:1 image is all green.
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 255, 0), (100, 0, 200, 100))
    image.paste((0, 0, 255), (200, 0, 300, 100))
    source = tmp_path / "stripes.png"
    image.save(source)
    square, _ = resize_image(source, ImageSettings(size=64, resize_mode="crop"))
    assert square.size == (64, 64)
    assert square.getpixel((2, 32)) == (0, 255, 0) and square.getpixel((61, 32)) == (0, 255, 0)


def test_exif_orientation_is_applied(tmp_path):
    source = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.new("RGB", (200, 100), (10, 20, 30)).save(source, exif=exif.tobytes())
    upright, _ = resize_image(source, ImageSettings(size=100))
    assert upright.size == (50, 100)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_other_modes_become_rgb(tmp_path, mode):
    source = tmp_path / f"{mode}.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
    Image.new(mode, (120, 80)).save(source)
    destination = tmp_path / "out.jpg"
    assert prepare_image(source, destination, ImageSettings(size=60)).status == "written"
    with Image.open(destination) as written:
        assert written.mode == "RGB" and written.size == (60, 40)


def test_truncated_jpeg_is_reported_corrupt_and_nothing_is_written(large_jpeg, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(large_jpeg.read_bytes()[:20000])
    destination = tmp_path / "out.jpg"
    outcome = prepare_image(broken, destination, ImageSettings())
    assert outcome.status == "corrupt" and outcome.detail
    assert not destination.exists() and list(tmp_path.glob(".*.tmp")) == []


def test_non_image_is_reported_unreadable(tmp_path):
    outcome = prepare_image(io.BytesIO(b"not an image at all"), tmp_path / "out.jpg", ImageSettings())
    assert outcome.status == "unreadable"


def test_png_output_format(large_jpeg, tmp_path):
    destination = tmp_path / "out.png"
    prepare_image(large_jpeg, destination, ImageSettings(size=128, image_format="png"))
    with Image.open(destination) as written:
        assert written.format == "PNG" and written.size == (128, 85)
