"""What the `mmft` command prints: `--version` (pyproject.toml's version and the API version), `render -o json`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mmft_operator.api.common import API_VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_projects_and_names_the_api():
    declared = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    printed = subprocess.run(
        [sys.executable, "-m", "mmft_operator.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == f"mmft {declared} (API {API_VERSION})"


def test_render_prints_the_same_objects_as_yaml_or_one_json_list(tmp_path):
    import json

    import yaml

    sample = ROOT / "deploy/samples/gemma3-melanoma"
    files = sorted(str(path) for path in sample.glob("*.yaml") if "kustomization" not in path.name)

    def render(*extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mmft_operator.cli", "render", *extra, *files],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    as_yaml = [doc for doc in yaml.safe_load_all(render()) if doc]
    as_json = json.loads(render("-o", "json"))
    assert as_json["kind"] == "List" and as_json["items"] == as_yaml
    assert len(as_yaml) > 5
