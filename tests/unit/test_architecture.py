"""Layering (import-linter contracts in pyproject.toml) and a CLI that stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_layers_hold() -> None:
    result = subprocess.run(["lint-imports", "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mmft_help_imports_no_ml_stack() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from mmft_operator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'axolotl', 'PIL', 'numpy', 'kopf') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"`mmft --help` imported {result.stdout.strip()}"


def test_no_operator_package_shadows_the_stdlib() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
