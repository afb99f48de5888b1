"""The validated settings of one preparation run, built from the `mmft dataprep` arguments."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmft_operator.seed_prompts import SEED_PROMPTS, PromptSet

from .errors import ConfigError

SPLIT_NAMES = ("train", "validation", "test")
BALANCE_MODES = ("none", "undersample", "oversample")
RESIZE_MODES = ("fit", "crop")
IMAGE_FORMATS = {"jpeg": ".jpg", "png": ".png"}
# Extensions dropped from an image name to name its output file (ISIC_1.png -> ISIC_1.jpg).
INPUT_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"}



@dataclass(frozen=True)
class ColumnMapping:
    image: str = "image_name"
    label: str = "target"
    # Empty: the CSV has no grouping, every image is its own group.
    group: str = "patient_id"
    positive_value: str = "1"


@dataclass(frozen=True)
class ImageSettings:
    size: int = 512
    resize_mode: str = "fit"
    image_format: str = "jpeg"
    jpeg_quality: int = 90

    @property
    def suffix(self) -> str:
        return IMAGE_FORMATS[self.image_format]

    def fingerprint(self) -> dict:
        """What an already written image must have been made with to be reused by a rerun."""
        return {"size": self.size, "resizeMode": self.resize_mode, "format": self.image_format,
                "jpegQuality": self.jpeg_quality}


@dataclass(frozen=True)
class PrepOptions:
    labels_csv: str
    output_dir: Path
    images_dir: str | None = None
    archive_urls: tuple[str, ...] = ()
    download_dir: Path | None = None
    image_path_prefix: str | None = None
    image_extension: str = ".jpg"
    columns: ColumnMapping = field(default_factory=ColumnMapping)
    prompts: PromptSet = SEED_PROMPTS
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42
    image: ImageSettings = field(default_factory=ImageSettings)
    balance: str = "none"
    workers: int = 1
    duplicates_csv: str | None = None

    def output_image_name(self, image: str) -> str:
        name = Path(image).name
        stem = Path(name).stem if Path(name).suffix.lower() in INPUT_IMAGE_SUFFIXES else name
        return stem + self.image.suffix

    @property
    def images_output_dir(self) -> Path:
        return self.output_dir / "images"

    @property
    def training_image_prefix(self) -> str:
        return (self.image_path_prefix or str(self.images_output_dir.absolute())).rstrip("/")

    @property
    def archive_download_dir(self) -> Path:
        return self.download_dir or self.output_dir / ".downloads"

    def validate(self) -> PrepOptions:
        if not self.images_dir and not self.archive_urls:
            raise ConfigError("give --images-dir or at least one --images-archive-url")
        if str(self.output_dir).startswith(("gs://", "http://", "https://")):
            raise ConfigError(f"--output-dir must be a local or mounted path, got {self.output_dir}")
        if self.images_dir and not self.images_dir.startswith("gs://"):
            source, target = Path(self.images_dir).resolve(), self.images_output_dir.resolve()
            if source == target or source in target.parents or target in source.parents:
                raise ConfigError(f"--output-dir {self.output_dir} would write images into --images-dir "
                                  f"{self.images_dir}; choose an output directory outside the inputs")
        for url in self.archive_urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--images-archive-url must be http(s)://, got {url!r}")
        if any(f < 0 or not math.isfinite(f) for f in self.fractions):
            raise ConfigError(f"split fractions must be finite and >= 0, got {self.fractions}")
        if not math.isclose(sum(self.fractions), 1.0, abs_tol=1e-6):
            raise ConfigError(
                "--train-fraction + --validation-fraction + --test-fraction must sum to 1, got "
                f"{' + '.join(str(f) for f in self.fractions)} = {sum(self.fractions):g}")
        if self.fractions[0] == 0:
            raise ConfigError("--train-fraction must be > 0")
        if not 16 <= self.image.size <= 8192:
            raise ConfigError(f"--image-size must be between 16 and 8192 pixels, got {self.image.size}")
        if not 1 <= self.image.jpeg_quality <= 95:
            raise ConfigError(f"--jpeg-quality must be between 1 and 95, got {self.image.jpeg_quality}")
        if self.image.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"--resize-mode must be one of {RESIZE_MODES}, got {self.image.resize_mode!r}")
        if self.image.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"--image-format must be one of {tuple(IMAGE_FORMATS)}, got {self.image.image_format!r}")
        if self.balance not in BALANCE_MODES:
            raise ConfigError(f"--balance must be one of {BALANCE_MODES}, got {self.balance!r}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if not self.columns.image or not self.columns.label:
            raise ConfigError("--image-column and --label-column must not be empty")
        if self.image_extension and not self.image_extension.startswith("."):
            raise ConfigError(f"--image-extension must start with a dot, got {self.image_extension!r}")
        for name, text in vars(self.prompts).items():
            if not text.strip():
                raise ConfigError(f"the {name.replace('_', ' ')} text must not be empty")
        return self


def default_workers() -> int:
    """Cores this process may use: the CPU affinity, capped by a cgroup v2 quota (a pod's CPU limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(Path("/sys/fs/cgroup/cpu.max"))
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_cpu_quota(cpu_max: Path) -> int | None:
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))
