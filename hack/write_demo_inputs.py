"""Writes the demo's inputs into a bucket folder: an ISIC-shaped labels CSV with small generated JPEGs, and a tiny
random Gemma 3 with its processor (no model hub is reachable). The same generators the tests use.

Runs inside the workload image (hack/demo.sh), which has torch, transformers and Pillow; the host needs none of them.
Usage: python hack/write_demo_inputs.py BUCKET_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(bucket: Path) -> None:
    sys.path[:0] = [str(REPO / "tests/ml"), str(REPO / "tests/unit")]
    from dataprep_fixtures import SmallDataset
    from tiny_gemma import build_tiny_gemma3

    isic = bucket / "inputs/isic"
    if not (isic / "ISIC_2020_Training_GroundTruth.csv").exists():
        isic.mkdir(parents=True, exist_ok=True)
        SmallDataset(isic, patients=24, images=120, positives=20)
    model = bucket / "models/tiny-gemma3"
    if not (model / "config.json").exists():
        build_tiny_gemma3(model)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
