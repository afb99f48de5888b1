"""`mmft metrics PREDICTIONS.jsonl`: classification metrics of a predictions file, printed as one JSON object."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Compute accuracy, precision, recall, specificity, F1, balanced accuracy, ROC/PR AUC from predictions JSONL."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", help='JSONL file, one {"id", "label": 0|1, "prediction": 0|1, "score"?} a line')
    parser.add_argument(
        "--model",
        help="only the lines of this model (the 'model' field `mmft evaluate` writes); required when the file "
        "holds several models",
    )


def main(args: argparse.Namespace) -> int:
    from mmft_operator.contracts.exit_codes import CONFIG_INVALID, DATA_INVALID

    from .metrics_file import MetricsFileError, metrics_of_file

    try:
        result = metrics_of_file(args.predictions, model=args.model)
    except FileNotFoundError:
        print(f"mmft metrics: {args.predictions}: no such file", file=sys.stderr)
        return CONFIG_INVALID
    except MetricsFileError as error:
        print(f"mmft metrics: {error}", file=sys.stderr)
        return DATA_INVALID
    print(json.dumps(result, indent=2))
    return 0
