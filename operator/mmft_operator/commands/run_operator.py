"""`mmft operator`: run the controller (kopf) against the cluster of the current kubeconfig or in-cluster."""

from __future__ import annotations

import argparse
import sys

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


def _limit_malloc_arenas() -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core); with kopf's worker threads the
    arenas hold freed memory apart and the resident size grows with the thread count. Two arenas are plenty for a
    process that mostly waits on the network. mallopt only affects arenas created later: call it before threads."""
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if libc_name and "libc.so" in libc_name:
        ctypes.CDLL(libc_name).mallopt(_M_ARENA_MAX, 2)


_M_ARENA_MAX = -8  # from glibc's malloc.h


def main(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os

    _limit_malloc_arenas()
    # kopf imports the kubernetes package whenever it can, for isinstance checks and a login the operator does not
    # use (connection.py): all its generated modules, 80 MiB. None in sys.modules makes the import fail at once.
    sys.modules["kubernetes"] = None
    import kopf

    from mmft_operator.controller import kopf_patches

    kopf_patches.install()

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
