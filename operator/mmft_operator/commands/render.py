"""`mmft render FILE.yaml`: print the children the operator would create, without a cluster (a dry run).

References between resources in the same file resolve as they would in the cluster once the referenced resource
succeeds (a DatasetPrep's split paths, a FineTuneJob's exported adapter); references to resources outside the
file show as placeholders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "Print the Kubernetes objects the operator creates for the mmft resources in FILE (no cluster needed)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files with mmft resources.")
    parser.add_argument("--namespace", "-n", default="default", help="Namespace to render into (default: default).")
    parser.add_argument(
        "--output", "-o", choices=("yaml", "json"), default="yaml",
        help="yaml: one document per object (default); json: one v1 List, as `kubectl get -o json` prints",
    )


def main(args: argparse.Namespace) -> int:
    import yaml
    from pydantic import ValidationError

    from mmft_operator.render import RenderError, render_documents

    documents = []
    for path in args.files:
        try:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        except (OSError, yaml.YAMLError) as error:
            print(f"mmft render: {path}: {error}", file=sys.stderr)
            return 2
    for doc in documents:
        if not str(doc.get("apiVersion", "")).startswith("mmft.io/"):
            print(f"mmft render: skipping {doc.get('kind')} (not an mmft.io resource)", file=sys.stderr)
    documents = [doc for doc in documents if str(doc.get("apiVersion", "")).startswith("mmft.io/")]
    try:
        children = render_documents(documents, args.namespace)
    except (RenderError, ValidationError) as error:
        print(f"mmft render: {error}", file=sys.stderr)
        return 2
    if args.output == "json":
        json.dump({"apiVersion": "v1", "kind": "List", "items": children}, sys.stdout, indent=2)
        print()
    else:
        yaml.safe_dump_all(children, sys.stdout, sort_keys=False, width=120)
    return 0
