"""`mmft dataprep`: labels CSV + images -> train/validation/test chat_template JSONL, resized images, stats.json.

Imports only the standard library at module level (the `mmft` dispatcher loads every subcommand for --help).
"""

from __future__ import annotations

import argparse
import logging
import sys

HELP = "Prepare a labelled image dataset (ISIC 2020 by default): patient-grouped split, resized images, JSONL."

_DEFAULTS_NOTE = "Defaults reproduce the seed notebook's texts and 80/10/10 split, grouped by patient_id."


def configure(parser: argparse.ArgumentParser) -> None:
    from mmft_operator.seed_prompts import SEED_PROMPTS

    from .options import BALANCE_MODES, IMAGE_FORMATS, RESIZE_MODES

    parser.epilog = _DEFAULTS_NOTE
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--labels-csv", required=True, help="labels CSV: local path, gs://bucket/object or http(s) URL")
    inputs.add_argument("--images-dir", help="directory of images (local or GCS FUSE mount) or gs://bucket/prefix")
    inputs.add_argument("--images-archive-url", action="append", default=[], dest="archive_urls",
                        metavar="URL", help="http(s) zip of images, downloaded resumably (repeatable; append "
                                            "#sha256=HEX to verify a known digest)")
    inputs.add_argument("--download-dir", help="where archives are downloaded (default: OUTPUT_DIR/.downloads); "
                                               "keep it on a volume that survives a pod restart to resume")
    inputs.add_argument("--duplicates-csv", help="CSV of duplicate image pairs (ISIC_2020_Training_Duplicates.csv);"
                                                 " the second image of each pair is dropped")
    inputs.add_argument("--image-column", default="image_name", help="column with the image name (%(default)s)")
    inputs.add_argument("--label-column", default="target", help="column with the label (%(default)s)")
    inputs.add_argument("--group-column", default="patient_id",
                        help="column whose values never span two splits (%(default)s); '' for none")
    inputs.add_argument("--positive-value", default="1", help="label value of the positive class (%(default)s)")
    inputs.add_argument("--image-extension", default=".jpg",
                        help="appended to image names without one to find the file (%(default)s)")

    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--output-dir", required=True, help="local or mounted directory for JSONL, images/, stats")
    outputs.add_argument("--image-path-prefix",
                         help="path of OUTPUT_DIR/images as the training pod sees it, written into the JSONL "
                              "(default: the absolute path of OUTPUT_DIR/images)")
    outputs.add_argument("--image-size", type=int, default=512,
                         help="longest side in pixels, aspect kept ('fit'), or the square side ('crop'); "
                              "never upscales (%(default)s)")
    outputs.add_argument("--resize-mode", choices=RESIZE_MODES, default="fit",
                         help="fit: keep aspect ratio; crop: centre square (%(default)s)")
    outputs.add_argument("--image-format", choices=tuple(IMAGE_FORMATS), default="jpeg", help="(%(default)s)")
    outputs.add_argument("--jpeg-quality", type=int, default=90, help="(%(default)s)")

    texts = parser.add_argument_group("conversation texts")
    texts.add_argument("--system-prompt", default=SEED_PROMPTS.system)
    texts.add_argument("--question", default=SEED_PROMPTS.question)
    texts.add_argument("--positive-answer", default=SEED_PROMPTS.positive_answer)
    texts.add_argument("--negative-answer", default=SEED_PROMPTS.negative_answer)

    split = parser.add_argument_group("split")
    split.add_argument("--train-fraction", type=float, default=0.8)
    split.add_argument("--validation-fraction", type=float, default=0.1)
    split.add_argument("--test-fraction", type=float, default=0.1)
    split.add_argument("--seed", type=int, default=42)
    split.add_argument("--balance", choices=BALANCE_MODES, default="none",
                       help="class balancing of the train split only (%(default)s)")

    parser.add_argument("--workers", type=int, help="image worker processes (default: the cores this pod may use)")


def options_from_args(args: argparse.Namespace):
    from pathlib import Path

    from mmft_operator.seed_prompts import PromptSet

    from .options import ColumnMapping, ImageSettings, PrepOptions, default_workers

    return PrepOptions(
        labels_csv=args.labels_csv,
        output_dir=Path(args.output_dir),
        images_dir=args.images_dir,
        archive_urls=tuple(args.archive_urls),
        download_dir=Path(args.download_dir) if args.download_dir else None,
        image_path_prefix=args.image_path_prefix,
        image_extension=args.image_extension,
        columns=ColumnMapping(args.image_column, args.label_column, args.group_column, args.positive_value),
        prompts=PromptSet(args.system_prompt, args.question, args.positive_answer, args.negative_answer),
        fractions=(args.train_fraction, args.validation_fraction, args.test_fraction),
        seed=args.seed,
        image=ImageSettings(args.image_size, args.resize_mode, args.image_format, args.jpeg_quality),
        balance=args.balance,
        workers=args.workers if args.workers is not None else default_workers(),
        duplicates_csv=args.duplicates_csv,
    ).validate()


def main(args: argparse.Namespace) -> int:
    from .reporting import run_and_report

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_and_report(lambda: options_from_args(args))
