"""Wrap alerts.rules.yaml (the one source of mmft's alert rules) into the two objects clusters load:
a PrometheusRule (Prometheus Operator) and a Rules object (Google Cloud Managed Service for Prometheus, GKE).

    python deploy/monitoring/render_rules.py          # rewrite both files
    python deploy/monitoring/render_rules.py --check  # exit 1 if either differs (tests/unit/test_monitoring.py)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "alerts.rules.yaml"
HEADER = "# Generated from alerts.rules.yaml by render_rules.py; edit that file, then run the script.\n"


def rendered() -> dict[Path, str]:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    metadata = {"name": "mmft-operator", "namespace": "mmft-system", "labels": {"app.kubernetes.io/name": "mmft"}}
    objects = {
        HERE / "prometheusrule.yaml": {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule"},
        # GKE's managed collection evaluates a namespaced Rules object over the metrics of its own namespace.
        HERE / "gke/rules.yaml": {"apiVersion": "monitoring.googleapis.com/v1", "kind": "Rules"},
    }
    return {
        path: HEADER + yaml.safe_dump({**head, "metadata": metadata, "spec": {"groups": groups}}, sort_keys=False,
                                      width=120)
        for path, head in objects.items()
    }


def main(argv: list[str]) -> int:
    stale = [path for path, text in rendered().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(HERE)} is stale: run python deploy/monitoring/render_rules.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in rendered().items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
