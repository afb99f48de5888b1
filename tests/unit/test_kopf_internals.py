"""controller/kopf_patches.py replaces or wraps kopf internals. kopf is pinned exactly in pyproject.toml; this test
fails loudly when the installed kopf is another version or when an internal the patches rely on changed shape,
instead of the patches silently doing nothing (or the wrong thing) after an upgrade."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator/mmft_operator"

# Read in a fresh interpreter: other tests install the patches into this one, hiding kopf's own functions.
PROBE = r"""
import asyncio, inspect, json, sys
sys.modules["kubernetes"] = None  # as `mmft operator` runs kopf
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching
from kopf._cogs.structs import bodies

def params(function):
    parameters = inspect.signature(function).parameters.values()
    return [[p.name, p.kind.name, p.default is inspect.Parameter.empty] for p in parameters]

toggles = aiotoggles.ToggleSet(all)
print(json.dumps({
    "toggleset": {name: {"coroutine": inspect.iscoroutinefunction(getattr(aiotoggles.ToggleSet, name)),
                         "params": params(getattr(aiotoggles.ToggleSet, name))}
                  for name in ("make_toggle", "drop_toggle", "drop_toggles", "is_on")},
    "toggleset_state": [type(toggles._condition).__name__, type(toggles._toggles).__name__],
    "toggle_init": params(aiotoggles.Toggle.__init__),
    "infinite_watch": {"async_generator": inspect.isasyncgenfunction(watching.infinite_watch),
                       "params": params(watching.infinite_watch)},
    "raw_event_keys": sorted(bodies.RawEvent.__annotations__),
}))
"""


def _shapes() -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


def test_the_installed_kopf_is_the_exact_version_pinned() -> None:
    pin = re.search(r'"kopf==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin, "kopf must be pinned exactly (==) in pyproject.toml: controller/kopf_patches.py patches its internals"
    assert importlib.metadata.version("kopf") == pin.group(1)


def test_the_toggle_set_internals_the_gate_fix_replaces_keep_their_shape() -> None:
    shapes = _shapes()
    toggleset = shapes["toggleset"]
    # kopf_patches._make_toggle / _drop_toggle / _drop_toggles replace these three coroutines one for one.
    assert toggleset["make_toggle"] == {"coroutine": True, "params": [
        ["self", "POSITIONAL_OR_KEYWORD", True], ["_ToggleSet__val", "POSITIONAL_OR_KEYWORD", False],
        ["name", "KEYWORD_ONLY", False]]}
    assert toggleset["drop_toggle"] == {"coroutine": True, "params": [
        ["self", "POSITIONAL_OR_KEYWORD", True], ["toggle", "POSITIONAL_OR_KEYWORD", True]]}
    assert toggleset["drop_toggles"] == {"coroutine": True, "params": [
        ["self", "POSITIONAL_OR_KEYWORD", True], ["toggles", "POSITIONAL_OR_KEYWORD", True]]}
    # ... reading and writing the set's state directly, and creating toggles on its shared condition.
    assert toggleset["is_on"] == {"coroutine": False, "params": [["self", "POSITIONAL_OR_KEYWORD", True]]}
    assert shapes["toggleset_state"] == ["Condition", "set"]
    assert shapes["toggle_init"] == [
        ["self", "POSITIONAL_OR_KEYWORD", True], ["_Toggle__state", "POSITIONAL_OR_KEYWORD", False],
        ["name", "KEYWORD_ONLY", False], ["condition", "KEYWORD_ONLY", False]]


def test_the_watch_stream_the_slim_bodies_wrap_keeps_its_shape() -> None:
    shapes = _shapes()
    # kopf_patches._slimmed wraps it as an async generator called with keywords, reading resource.group/plural...
    assert shapes["infinite_watch"]["async_generator"] is True
    assert {"settings", "resource", "namespace"} <= {
        name for name, kind, _ in shapes["infinite_watch"]["params"] if kind == "KEYWORD_ONLY"}
    assert all(kind == "KEYWORD_ONLY" for _, kind, _ in shapes["infinite_watch"]["params"])
    # ... and slimming each raw event's "object" in place.
    assert shapes["raw_event_keys"] == ["object", "type"]


def test_only_kopf_patches_touches_kopf_internals() -> None:
    importers = set()
    for path in OPERATOR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            if any(name.startswith("kopf._") for name in names):
                importers.add(path.relative_to(OPERATOR).as_posix())
    assert importers == {"controller/kopf_patches.py"}
