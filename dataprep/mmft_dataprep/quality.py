"""Output quality checks (bench and tests): PSNR of a resized image against a full-resolution reference."""

from __future__ import annotations

import math


def reference_resize(source, size: tuple[int, int]):
    """The best-quality path: decode every pixel, then one Lanczos resample straight to ``size``."""
    from PIL import Image

    with Image.open(source) as image:
        return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def psnr(image, reference) -> float:
    """Peak signal-to-noise ratio in dB over RGB (infinite for identical images)."""
    import numpy as np

    if image.size != reference.size:
        raise ValueError(f"sizes differ: {image.size} vs {reference.size}")
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    b = np.asarray(reference.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
