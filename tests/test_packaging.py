"""polyaudit installed from its wheel, without a clone: the claims ship inside the package
(polyaudit.claims, the same files as the repository's claims/), and `polyaudit run` audits a model
from an empty folder. The package list in pyproject.toml stays complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_packaged() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set(setuptools.find_packages(str(ROOT), include=["polyaudit*"]))
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert "polyaudit.claims" in listed


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 1200,
         ok: tuple[int, ...] = (0,)) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout)
    assert out.returncode in ok, f"{' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.slow
def test_the_wheel_audits_from_an_empty_folder(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], tmp_path)
    (wheel,) = dist.glob("polyaudit-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], tmp_path)  # first: the CPU wheel
    _run([py, "-m", "pip", "install", "-q", str(wheel)], tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", POLYAUDIT_CACHE=str(tmp_path / "cache"), PATH=f"{venv / 'bin'}:{env['PATH']}")
    listing = _run([py, "-c", "import polyaudit.claims, os; d = os.path.dirname(polyaudit.claims.__file__); "
                    "print(sorted(f for f in os.listdir(d) if f.startswith('test_')))"], empty, env)
    assert "test_c4_alpha_depth.py" in listing and "site-packages" not in str(ROOT)
    _run([str(venv / "bin" / "polyaudit"), "run", "--model=zoo:mlp-digits?width=16&depth=3", "--profile=quick",
          "-k", "c4", "--json=out.json", "--no-reports", "-q", "-p", "no:cacheprovider"], empty, env,
         ok=(0, 1))  # 1: a FAIL or ERROR row, a finding: the audit ran
    doc = json.loads((empty / "out.json").read_text())
    assert {r["claim"] for r in doc["rows"]} == {"C4"} and len(doc["rows"]) == 2
    assert not list(empty.glob("**/*.py")), "the audit needed no file of the repository"
