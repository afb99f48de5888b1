"""Argo CD health checks of the mmft.io kinds, run by a real Lua 5.1 the way Argo CD runs them.

Argo CD (util/lua/lua.go) runs a health.lua in gopher-lua, a Lua 5.1: the object, decoded from YAML/JSON into Lua
tables (lists 1-based), is the global `obj`, and the chunk's returned table is the health. Scripts from argocd-cm get
only the base, table, package and a safe os library unless useOpenLibs is set, so the runtime here removes the
string and math libraries (and the string metatable behind ("x"):method calls) before running a script. Lua 5.1's
parser also rejects what gopher-lua would (goto, //).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaError, LuaRuntime, lua_type
from mmft_operator.api.common import GROUP
from mmft_operator.api.kinds import ALL_KINDS, BY_KIND

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
CUSTOMIZATIONS = ARGOCD / "resource_customizations" / GROUP
KINDS = tuple(info.kind for info in ALL_KINDS)
HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
KIND_SPECIFIC_BEGIN = "-- mmft:kind-specific begin"
KIND_SPECIFIC_END = "-- mmft:kind-specific end"

# What argocd-cm scripts find besides the base library: gopher-lua's OpenPackage, OpenTable and argo-cd's safe os.
_ARGOCD_SANDBOX = """
debug.setmetatable("", nil)
os = { time = os.time, date = os.date, clock = os.clock, difftime = os.difftime }
string, math, io, debug = nil, nil, nil, nil
"""


def to_lua(runtime: LuaRuntime, value: Any, path: str) -> Any:
    """A decoded YAML value as Argo CD hands it to Lua: maps and lists become tables, lists indexed from 1."""
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} is not a string; Kubernetes objects are JSON")
            table[key] = to_lua(runtime, item, f"{path}.{key}")
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = to_lua(runtime, item, f"{path}[{index - 1}]")
        return table
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{path}: a YAML {type(value).__name__} has no JSON form; quote it as kubectl -o yaml does")


def run_health_script(script: str, obj: dict[str, Any]) -> dict[str, Any]:
    runtime = LuaRuntime(register_eval=False, register_builtins=False)
    runtime.execute(_ARGOCD_SANDBOX)
    runtime.globals().obj = to_lua(runtime, obj, "obj")
    health = runtime.execute(script)
    assert lua_type(health) == "table", f"the script returned {lua_type(health) or type(health).__name__}, not a table"
    return dict(health.items())


def health_script(kind: str) -> str:
    return (CUSTOMIZATIONS / kind / "health.lua").read_text()


def health_tests(kind: str) -> list[dict[str, Any]]:
    return yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())["tests"]


def load_object(kind: str, input_path: str) -> dict[str, Any]:
    return yaml.safe_load((CUSTOMIZATIONS / kind / input_path).read_text())


def _cases() -> list:
    return [pytest.param(kind, case, id=f"{kind}/{case['inputPath']}") for kind in KINDS for case in health_tests(kind)]


@pytest.mark.parametrize(("kind", "case"), _cases())
def test_health_script_gives_the_expected_status_and_message(kind, case):
    obj = load_object(kind, case["inputPath"])
    assert obj["kind"] == kind

    health = run_health_script(health_script(kind), obj)

    assert health == case["healthStatus"]
    assert health["status"] in HEALTH_STATUSES


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_script_tests_and_enough_cases(kind):
    directory = CUSTOMIZATIONS / kind
    assert (directory / "health.lua").is_file()
    tests = health_tests(kind)
    referenced = {case["inputPath"] for case in tests}
    on_disk = {f"testdata/{path.name}" for path in (directory / "testdata").glob("*.yaml")}
    assert referenced == on_disk, "every testdata file is listed in health_test.yaml and every listed file exists"
    assert len(tests) >= 5
    assert {case["healthStatus"]["status"] for case in tests} >= {"Healthy", "Progressing", "Degraded"}


def test_customizations_cover_exactly_the_operators_kinds():
    assert {path.name for path in CUSTOMIZATIONS.iterdir() if path.is_dir()} == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_testdata_is_shaped_like_the_operators_api(kind):
    info = BY_KIND[kind]
    for case in health_tests(kind):
        obj = load_object(kind, case["inputPath"])
        assert obj["apiVersion"] == f"{GROUP}/v1alpha1"
        info.spec_model.model_validate(obj["spec"])
        if "status" in obj:
            info.status_model.model_validate(obj["status"])


def _shared_part(script: str) -> str:
    begin, end = script.index(KIND_SPECIFIC_BEGIN), script.index(KIND_SPECIFIC_END)
    return script[:begin] + script[end:]


def test_scripts_differ_only_in_their_kind_specific_block():
    shared = {kind: _shared_part(health_script(kind)) for kind in KINDS}
    assert len(set(shared.values())) == 1, "the code outside the kind-specific block has drifted between kinds"


@pytest.mark.parametrize(
    "script",
    [
        'return { status = string.format("%s", "Healthy") }',
        'return { status = ("Healthy"):lower() }',
        "return { status = tostring(math.floor(1.5)) }",
    ],
)
def test_the_runtime_withholds_the_libraries_argocd_cm_scripts_lack(script):
    with pytest.raises(LuaError):
        run_health_script(script, {"kind": "FineTuneJob"})


def test_the_runtime_rejects_values_that_json_cannot_carry():
    with pytest.raises(TypeError, match=r"obj\.status\.conditions\[0\]\.lastTransitionTime"):
        run_health_script("return {}", yaml.safe_load("status: {conditions: [{lastTransitionTime: 2026-03-02}]}"))


def test_argocd_cm_patch_carries_the_same_scripts():
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert (patch["kind"], patch["metadata"]["name"], patch["metadata"]["namespace"]) == (
        "ConfigMap",
        "argocd-cm",
        "argocd",
    )
    expected = {f"resource.customizations.health.{GROUP}_{kind}": health_script(kind) for kind in KINDS}
    assert patch["data"] == expected


def test_argocd_cm_patch_is_what_the_generator_renders():
    spec = importlib.util.spec_from_file_location("render_argocd_cm_patch", ARGOCD / "render_argocd_cm_patch.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.render() == (ARGOCD / "argocd-cm-patch.yaml").read_text()


def test_application_syncs_the_sample_pipeline():
    application = yaml.safe_load((ARGOCD / "application-gemma3-melanoma.yaml").read_text())
    source, policy = application["spec"]["source"], application["spec"]["syncPolicy"]
    assert (ROOT / source["path"] / "kustomization.yaml").is_file()
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert {"ServerSideApply=true", "CreateNamespace=true"} <= set(policy["syncOptions"])
