"""``python -m mmft_trainer train CONFIG ...``: the entry point torchrun launches on every rank."""

from __future__ import annotations

import argparse
import sys

from . import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmft_trainer")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli.configure(subparsers.add_parser("train", help=cli.HELP))
    return cli.main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
