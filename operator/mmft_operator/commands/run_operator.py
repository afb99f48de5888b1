"""`mmft operator`: run the controller (kopf) against the cluster of the current kubeconfig or in-cluster."""

from __future__ import annotations

import argparse

HELP = "Run the mmft operator (watches DatasetPrep, FineTuneJob and Evaluation)."


def configure(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="Watch only this namespace (repeatable).")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="Watch the whole cluster (default).")
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="Liveness endpoint served by kopf (empty to disable)."
    )
    parser.add_argument(
        "--log-format",
        choices=("plain", "full", "json"),
        default="full",
        help="kopf log format; json carries the resource's namespace/name as fields.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="Debug logging.")


def main(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os

    import kopf

    # The resync loop must stay inside the same namespaces as kopf's watches.
    os.environ["MMFT_NAMESPACES"] = ",".join(args.namespace)
    import mmft_operator.handlers  # noqa: F401 - registers the handlers

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    if not args.verbose:
        # kopf logs every handled watch event at INFO; the operator logs its own transitions and failures.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=True,
            liveness_endpoint=args.liveness or None,
        )
    )
    return 0
