"""The layers of polyaudit/ (pyproject.toml [tool.importlinter], docs/architecture.md): each imports
only from the layers below it, at module or function level alike, and nothing imports in a cycle.
The check is import-linter's `layers` contract; the second test plants an upward import in a copy
of the package to show that the check fails on one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the package under `root` with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                          text=True, check=False, timeout=300)


def test_every_layer_imports_only_from_the_layers_below_it() -> None:
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "KEPT" in out.stdout


@pytest.mark.parametrize("module, upward", [
    ("measures/spectrum.py", "polyaudit.plugin.state"),  # a pure measure reaching into the plugin
    ("models/base.py", "polyaudit.interventions.downstream"),  # a model reaching into an intervention
])
def test_a_planted_upward_import_breaks_the_check(tmp_path: Path, module: str, upward: str) -> None:
    shutil.copytree(ROOT / "polyaudit", tmp_path / "polyaudit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "polyaudit" / module
    target.write_text(target.read_text() + f"\n\ndef _planted() -> None:\n    import {upward}  # noqa\n")
    out = lint_imports(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and upward in out.stdout, out.stdout[-3000:]
