"""Golden files of every builder, through `render_documents` (what `mmft render` prints).

Regenerate after an intended change with: MMFT_UPDATE_GOLDEN=1 pytest tests/unit/test_render_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from mmft_operator.render import render_documents

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "gemma3-melanoma-sample": sorted((ROOT / "deploy/samples/gemma3-melanoma").glob("[!k]*.yaml")),
    "finetunejob-multinode": [GOLDEN / "inputs/finetunejob-multinode.yaml"],
    "finetunejob-l4-minimal": [GOLDEN / "inputs/finetunejob-l4-minimal.yaml"],
    # No GPU (gpusPerNode 0, gpus 0): the pipeline the local cluster's real node runs (hack/demo.sh).
    "localcluster-tiny-pipeline": sorted((ROOT / "deploy/localcluster/samples/tiny-pipeline").glob("[!k]*.yaml")),
    # Every escape hatch (scheduling, env, extra volumes, provisioning, tracking) on all three kinds.
    "escape-hatches": [GOLDEN / "inputs/escape-hatches.yaml"],
}


def _render(paths: list[Path]) -> str:
    documents = [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]
    return yaml.safe_dump_all(render_documents(documents, "default"), sort_keys=False, width=120)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_children_match_golden_file(case: str) -> None:
    rendered = _render(CASES[case])
    golden = GOLDEN / f"{case}.rendered.yaml"
    if os.environ.get("MMFT_UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}; run with MMFT_UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(), f"{case}: rendering changed; review and regenerate {golden.name}"
