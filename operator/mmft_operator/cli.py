"""The `mmft` command.

Each subcommand lives in its own module exposing ``HELP``, ``configure(parser)`` and ``main(args) -> int``.
Those modules import only the standard library at import time, so ``mmft --help`` stays fast and never pulls
torch into the operator image; heavy imports happen inside ``main``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

SUBCOMMANDS: dict[str, str] = {
    "operator": "mmft_operator.commands.run_operator",
    "render": "mmft_operator.commands.render",
    "crds": "mmft_operator.commands.crds",
    "cluster": "mmft_localcluster.cli",
    "dataprep": "mmft_dataprep.cli",
    "train": "mmft_trainer.cli",
    "evaluate": "mmft_evaluator.cli_evaluate",
    "metrics": "mmft_evaluator.cli_metrics",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmft", description="Multimodal fine-tuning on Kubernetes.")
    parser.add_argument("--version", action=_PrintVersion, help="print the version and the API version, then exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # A slim install (the operator image) lacks some workload packages; say so instead of crashing.
            missing = subparsers.add_parser(name, help=f"(unavailable: {error.name} is not installed)")
            missing.set_defaults(handler=_unavailable(name, error))
            continue
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.main)
    return parser


def version_line() -> str:
    """The installed distribution's version (pyproject.toml is its one source) and the API version it serves."""
    from mmft_operator.api.common import API_VERSION

    try:
        version = importlib.metadata.version("mmft")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown (not installed)"
    return f"mmft {version} (API {API_VERSION})"


class _PrintVersion(argparse.Action):
    """Like argparse's "version" action, but computed only when asked: the API module imports pydantic."""

    def __init__(self, option_strings: list[str], dest: str, help: str) -> None:  # noqa: A002 - argparse's name
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        print(version_line())
        parser.exit()


def _unavailable(name: str, error: ModuleNotFoundError):
    def handler(_args: argparse.Namespace) -> int:
        print(f"mmft {name}: this installation lacks {error.name!r}; install the matching extra", file=sys.stderr)
        return 2

    return handler


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
