"""docs/troubleshooting.md lists every reason the operator can write, and only those (issue 19.6).

The reasons are collected from the code itself: every CamelCase string literal the operator's source passes where a
reason goes (the reason argument of ConditionUpdate, Prerequisite, WorkloadVerdict and Event; an assignment to a
variable named `reason`; the first element of a returned (reason, message, ...) tuple; the values of a dict mapping
Kubernetes' reasons to ours). Rows whose Source column says `Kubernetes` are reasons passed through unchanged from
another controller (e.g. the TensorBoard Deployment's own); they must not also be written by mmft.

Adding a reason in the code: this test fails naming it and printing a row to fill in and paste into the table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator/mmft_operator"
TABLE = ROOT / "docs/troubleshooting.md"
REASON = re.compile(r"^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$")
# Where the reason goes in each constructor's positional arguments.
REASON_ARGUMENT = {"ConditionUpdate": 2, "Prerequisite": 2, "WorkloadVerdict": 1, "Event": 1}


def _literals(node: ast.AST) -> set[str]:
    """The reason-like string constants an expression can evaluate to (through `x if c else y` and `a or b`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} if REASON.match(node.value) else set()
    if isinstance(node, ast.IfExp):
        return _literals(node.body) | _literals(node.orelse)
    if isinstance(node, ast.BoolOp):
        return set().union(*(_literals(value) for value in node.values))
    return set()


def _alternatives(node: ast.AST) -> list[ast.AST]:
    """The tuples an expression can evaluate to: `t`, `t1 if c else t2`, `f() or t`."""
    if isinstance(node, ast.IfExp):
        return _alternatives(node.body) + _alternatives(node.orelse)
    if isinstance(node, ast.BoolOp):
        return [alternative for value in node.values for alternative in _alternatives(value)]
    return [node]


def _reasons_in(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Call):
        name = getattr(node.func, "id", getattr(node.func, "attr", None))
        if name not in REASON_ARGUMENT:
            return set()
        position = REASON_ARGUMENT[name]
        found = _literals(node.args[position]) if len(node.args) > position else set()
        return found.union(*(_literals(keyword.value) for keyword in node.keywords if keyword.arg == "reason"))
    if isinstance(node, ast.Assign):
        found: set[str] = set()
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id == "reason":
                found |= _literals(node.value)
            if isinstance(target, ast.Tuple):
                for index, element in enumerate(target.elts):
                    if isinstance(element, ast.Name) and element.id == "reason":
                        for value in _alternatives(node.value):
                            if isinstance(value, ast.Tuple) and len(value.elts) > index:
                                found |= _literals(value.elts[index])
        return found
    if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and node.value.elts:
        return _literals(node.value.elts[0])
    pairs = zip(node.keys, node.values, strict=True) if isinstance(node, ast.Dict) else ()
    if isinstance(node, ast.Dict) and node.keys and all(
        key is not None and _literals(key) and _literals(value) for key, value in pairs
    ):
        return set().union(*(_literals(value) for value in node.values))
    return set()


def reasons_in_code() -> dict[str, set[str]]:
    """Every reason the operator's source can write, with the modules that write it."""
    found: dict[str, set[str]] = {}
    for path in sorted(OPERATOR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            for reason in _reasons_in(node):
                found.setdefault(reason, set()).add(str(path.relative_to(OPERATOR)))
    return found


def table_rows() -> dict[str, str]:
    """Reason -> Source (`mmft` or `Kubernetes`) from the table's rows: | `Reason` | Source | ... |"""
    rows = {}
    for line in TABLE.read_text().splitlines():
        match = re.match(r"^\|\s*`([A-Za-z0-9]+)`\s*\|\s*(mmft|Kubernetes)\s*\|", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows in {TABLE.name}"
            rows[match.group(1)] = match.group(2)
    return rows


def test_the_scan_finds_reasons_of_every_form_it_claims_to() -> None:
    found = reasons_in_code()
    # One of each form: a verdict, a prerequisite, a returned tuple, a dict value, a tuple assignment's fallback,
    # a condition's literal, and an `x or "Default"` expression.
    for reason in ("Starting", "DatasetNotFound", "OOMKilled", "ImagePullError", "BackoffLimitExceeded",
                   "NotStalled", "TensorBoardStarting"):
        assert reason in found, f"the scan no longer sees {reason}: fix the scan before trusting this test"


def test_every_reason_the_code_writes_has_a_row_and_every_row_is_written() -> None:
    found, rows = reasons_in_code(), table_rows()
    ours = {reason for reason, source in rows.items() if source == "mmft"}
    missing = sorted(set(found) - ours)
    template = "\n".join(f"| `{reason}` | mmft | (condition/kind) | (what it means) | (what to do) |"
                         for reason in missing)
    assert not missing, (
        f"reasons written by the code but not in {TABLE.relative_to(ROOT)} "
        f"({', '.join(f'{r} in {sorted(found[r])}' for r in missing)}); add these rows:\n{template}"
    )
    stale = sorted(ours - set(found))
    assert not stale, f"rows in {TABLE.name} for reasons no code writes any more (remove them): {stale}"
    passed_through = sorted({reason for reason, source in rows.items() if source == "Kubernetes"} & set(found))
    assert not passed_through, f"marked Kubernetes in {TABLE.name} but written by mmft: {passed_through}"
