"""Decode, convert to RGB, resize and re-encode one image, fast: JPEG DCT scaling before any pixel work.

A 6000x4000 JPEG decoded in full is 24 MP of IDCT plus a 24 MP resample; ``Image.draft`` lets libjpeg decode
at 1/2, 1/4 or 1/8 scale directly (the scaled IDCT is itself a good low-pass filter), so the decoder touches
only the needed resolution and the final Lanczos resample works on a small image.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .options import ImageSettings

# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose does).
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageOutcome:
    status: str  # "written", or a drop reason: "corrupt", "unreadable"
    detail: str = ""
    source_size: tuple[int, int] | None = None


def fit_size(width: int, height: int, settings: ImageSettings) -> tuple[int, int]:
    """Output size: the longest side becomes settings.size ('fit'), or a size x size square ('crop');
    never larger than the source."""
    if settings.resize_mode == "crop":
        side = min(settings.size, width, height)
        return side, side
    scale = min(1.0, settings.size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_image(source, settings: ImageSettings):
    """Open ``source`` (path or file object) and return the resized, upright RGB image."""
    from PIL import Image

    with Image.open(source) as image:
        width, height = image.size
        out_width, out_height = fit_size(width, height, settings)
        if settings.resize_mode == "crop":
            # Decode at the scale whose short side still covers the square.
            short = min(width, height)
            decode_request = (max(1, width * out_width // short), max(1, height * out_height // short))
        else:
            decode_request = (out_width, out_height)
        image.draft("RGB", decode_request)
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
        icc_profile = image.info.get("icc_profile")
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        if settings.resize_mode == "crop":
            rgb = _center_square(rgb)
        resized = rgb.resize((out_width, out_height), Image.Resampling.LANCZOS) if rgb.size != (
            out_width, out_height) else rgb.copy()
    resized = _upright(resized, orientation)
    if icc_profile:
        resized.info["icc_profile"] = icc_profile
    return resized, (width, height)


def prepare_image(source, destination: Path, settings: ImageSettings) -> ImageOutcome:
    """Resize ``source`` into ``destination`` atomically; a bad image is reported, never raised."""
    from PIL import Image, UnidentifiedImageError

    try:
        resized, source_size = resize_image(source, settings)
    except FileNotFoundError as error:
        return ImageOutcome("missing_file", str(error))
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        return ImageOutcome("unreadable", _one_line(error))
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports truncated or damaged JPEG data as OSError/SyntaxError.
        return ImageOutcome("corrupt", _one_line(error))
    save_atomically(resized, destination, settings)
    return ImageOutcome("written", source_size=source_size)


def save_atomically(image, destination: Path, settings: ImageSettings) -> None:
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            icc = image.info.get("icc_profile")
            if settings.image_format == "jpeg":
                image.save(handle, "JPEG", quality=settings.jpeg_quality, icc_profile=icc)
            else:
                image.save(handle, "PNG", icc_profile=icc)
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _center_square(image):
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _upright(image, orientation: int):
    from PIL import Image

    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return image.transpose(method) if method is not None else image


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
