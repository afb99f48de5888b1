"""Copy the manifests the chart shares with deploy/ into its templates (one source: deploy/base and
deploy/monitoring), with Helm's labels, the release namespace and an on/off value added.

    python deploy/helm/sync_from_base.py          # rewrite the chart's copies
    python deploy/helm/sync_from_base.py --check  # exit 1 if they differ (tests/unit/test_helm_chart.py)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEPLOY = HERE.parent
TEMPLATES = HERE / "mmft/templates"
# Source under deploy/ -> (template name, the value that turns it on or None for always, namespaced).
COPIED = {
    "base/clusterrole.yaml": ("clusterrole.yaml", None, False),
    "base/user-roles.yaml": ("user-roles.yaml", "userRoles.enabled", False),
    "monitoring/servicemonitor.yaml": ("servicemonitor.yaml", "metrics.serviceMonitor.enabled", True),
    "monitoring/prometheusrule.yaml": ("prometheusrule.yaml", "metrics.prometheusRule.enabled", True),
    "monitoring/gke/podmonitoring.yaml": ("podmonitoring.yaml", "metrics.podMonitoring.enabled", True),
    "monitoring/gke/rules.yaml": ("gke-rules.yaml", "metrics.gkeRules.enabled", True),
}
HEADER = "# Generated from deploy/{source} by deploy/helm/sync_from_base.py; edit that file, then run the script.\n"
LABELS = '  labels:\n    {{- include "mmft.labels" . | nindent 4 }}\n'


def _escaped(text: str) -> str:
    """Prometheus templates ({{ $value }}) in alert annotations must reach the cluster verbatim, not through Helm."""
    return re.sub(r"\{\{|\}\}", lambda match: "{{`" + match.group(0) + "`}}", text)


def _document(document: dict, namespaced: bool) -> str:
    meta = document.pop("metadata")
    own_labels = meta.pop("labels", {}) or {}
    meta.pop("namespace", None)
    lines = [f"apiVersion: {document.pop('apiVersion')}", f"kind: {document.pop('kind')}", "metadata:",
             f"  name: {meta.pop('name')}"]
    if namespaced:
        lines.append("  namespace: {{ .Release.Namespace }}")
    text = "\n".join(lines) + "\n" + LABELS
    own_labels.pop("app.kubernetes.io/name", None)  # mmft.labels has it
    text += "".join(f"    {key}: {json.dumps(value)}\n" for key, value in own_labels.items())
    if meta:
        text += _escaped(yaml.safe_dump({"x": meta}, sort_keys=False, width=120).split("\n", 1)[1])
    return text + _escaped(yaml.safe_dump(document, sort_keys=False, width=120))


def rendered() -> dict[Path, str]:
    out = {}
    for source, (name, switch, namespaced) in COPIED.items():
        documents = [doc for doc in yaml.safe_load_all((DEPLOY / source).read_text()) if doc]
        body = "---\n".join(_document(document, namespaced) for document in documents)
        if switch:
            body = f"{{{{- if .Values.{switch} }}}}\n{body}{{{{- end }}}}\n"
        out[TEMPLATES / name] = HEADER.format(source=source) + body
    return out


def main(argv: list[str]) -> int:
    stale = [path for path, text in rendered().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is stale: run python deploy/helm/sync_from_base.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in rendered().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
