"""Every top-level package a module imports is declared in pyproject.toml, in the extra its package installs with.

A new user installs only what pyproject.toml declares (`make install-operator` is `.[test,localcluster]`, the images
install one extra each): an import that works here only because some other package pulled its distribution in, or
because the machine's Python had it, fails for them. Imports are found with `ast` (function-level ones included);
each imported module is mapped to the distributions that provide it in this environment, and one of them must be
declared where the importing file may rely on it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT_ROOTS = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]
PROJECT_PACKAGES = {path.parent.name for root in PROJECT_ROOTS for path in (ROOT / root).glob("*/__init__.py")}
# Folders of helper modules that tests and benchmarks import by their plain names (they put the folder on sys.path).
LOCAL_MODULE_DIRS = ["tests/unit", "tests/integration", "tests/ml", "bench", "docker"]
LOCAL_MODULES = {path.stem for folder in LOCAL_MODULE_DIRS for path in (ROOT / folder).glob("*.py")}
EVERY_EXTRA = list(PYPROJECT["project"]["optional-dependencies"])

# Which requirements each part of the tree may import: the core dependencies plus these extras.
EXTRAS_OF = {
    "operator/mmft_operator": [],
    "localcluster/mmft_localcluster": ["localcluster"],
    "trainer/mmft_trainer": ["trainer"],
    "evaluator/mmft_evaluator": ["evaluator"],
    "dataprep/mmft_dataprep": ["dataprep"],
    # The workloads' Cloud Storage helper: each workload's extra alone must bring what it imports (checked below).
    "storage/mmft_storage": ["dataprep"],
    "tests": EVERY_EXTRA,
    "bench": EVERY_EXTRA,
}
# Run by the images' builds with a bare Python: the standard library only.
STDLIB_ONLY = ["docker"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0))


def declared(extras: list[str]) -> set[str]:
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {requirement_name(requirement) for requirement in requirements}


def guarded_by_import_error(node: ast.Try) -> bool:
    names = []
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names += [kind.id for kind in kinds if isinstance(kind, ast.Name)]
    return bool({"ImportError", "ModuleNotFoundError"} & set(names))


def imported_modules(path: Path) -> set[str]:
    """Absolute imports of a file, except those inside `try: ... except ImportError` (optional by design)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and guarded_by_import_error(node):
            optional |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@cache
def packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def distribution_files(distribution: str) -> frozenset[str]:
    return frozenset(str(file) for file in importlib.metadata.distribution(distribution).files or [])


def providers(module: str) -> set[str]:
    """Distributions (normalized names) installed here that provide `module`."""
    top = module.split(".")[0]
    candidates = set(packages_distributions().get(top, []))
    if len(candidates) > 1:  # a namespace package (google.*): the distributions that ship this very module
        prefix = module.replace(".", "/")
        narrowed = {
            name for name in candidates
            if any(file.startswith((prefix + "/", prefix + ".")) for file in distribution_files(name))
        }
        candidates = narrowed or candidates
    return {normalize(name) for name in candidates}


def third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top not in sys.stdlib_module_names and top not in PROJECT_PACKAGES and top not in LOCAL_MODULES


def files_of(part: str) -> list[Path]:
    return sorted((ROOT / part).rglob("*.py"))


def undeclared_imports(part: str, extras: list[str]) -> dict[str, list[str]]:
    allowed = declared(extras)
    problems: dict[str, list[str]] = defaultdict(list)
    for path in files_of(part):
        for module in sorted(filter(third_party, imported_modules(path))):
            found = providers(module)
            if not found & allowed:
                where = f"provided by {', '.join(sorted(found))}" if found else "not installed here"
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                problems[str(shown)].append(f"{module} ({where})")
    return dict(problems)


def installed(requirement: str) -> bool:
    try:
        importlib.metadata.distribution(requirement)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize("part", list(EXTRAS_OF))
def test_every_import_is_declared_for_its_part(part):
    extras = EXTRAS_OF[part]
    # Which distribution provides a module is known only for installed ones (`make install` installs every extra).
    missing = sorted(name for name in declared(extras) if not installed(name))
    if missing:
        pytest.skip(f"{part}: {', '.join(missing)} not installed here; `make install` installs every extra")
    assert files_of(part), f"{part} has no Python files: update EXTRAS_OF"
    problems = undeclared_imports(part, extras)
    where = "dependencies" + "".join(f" + {extra}" for extra in extras)
    assert not problems, f"imports not declared in pyproject.toml's {where}: {problems}"


@pytest.mark.parametrize("part", STDLIB_ONLY)
def test_image_build_helpers_import_only_the_standard_library(part):
    imported = {module for path in files_of(part) for module in imported_modules(path)}
    assert imported and not {module for module in imported if module.split(".")[0] not in sys.stdlib_module_names}


def test_every_package_of_the_project_is_checked():
    checked = {Path(part).name for part in EXTRAS_OF}
    assert PROJECT_PACKAGES <= checked, f"packages without a rule in EXTRAS_OF: {PROJECT_PACKAGES - checked}"


def test_the_check_finds_an_undeclared_import(tmp_path, monkeypatch):
    # The operator may import its core dependencies (yaml), not what only the test or localcluster extras bring.
    module = tmp_path / "probe.py"
    module.write_text("import yaml\nimport _pytest.fixtures\nfrom cryptography import x509\n")
    monkeypatch.setattr(sys.modules[__name__], "files_of", lambda part: [module])
    problems = undeclared_imports("operator/mmft_operator", [])
    assert list(problems.values()) == [
        ["_pytest.fixtures (provided by pytest)", "cryptography (provided by cryptography)"]
    ]


@pytest.mark.parametrize("extra", ["dataprep", "trainer", "evaluator"])
def test_each_workload_extra_brings_what_the_shared_storage_helper_imports(extra):
    # mmft_storage is imported by all three workloads: installed with any one of their extras, it must work.
    assert undeclared_imports("storage/mmft_storage", [extra]) == {}
