"""``mmft train CONFIG``: preflight, train with Axolotl, report progress, export (see docs/trainer.md)."""

from __future__ import annotations

import argparse
import os

HELP = "Fine-tune with Axolotl: preflight the config, train with progress reports and preemption safety, export."

EXPORT_CHOICES = ("adapter", "merged", "both")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="Axolotl YAML config")
    parser.add_argument("--preflight", action="store_true",
                        help="only validate the config, model and target modules; exit 78 on any problem")
    parser.add_argument("--export-uri", metavar="gs://BUCKET/PREFIX",
                        help="after training, upload to PREFIX/adapter and/or PREFIX/merged")
    parser.add_argument("--export", choices=EXPORT_CHOICES, default="adapter",
                        help="what to upload to --export-uri (default: adapter)")
    parser.add_argument("--tensorboard-sync-dir", metavar="DIR",
                        help="copy TensorBoard event files here periodically (the GCS Fuse mount TensorBoard reads)")
    parser.add_argument("--tensorboard-sync-interval", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between TensorBoard syncs (default: 60)")


def main(args: argparse.Namespace) -> int:
    # Before Axolotl is imported: without it a finished run hung 9+ minutes on telemetry without network.
    os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .runner import run

    return run(args)
