"""`--cache-max-gb` end to end: after the run, least recently used entries of earlier runs are
evicted; this run's own entries stay, and the terminal says what happened in one line each."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

C4 = Path(__file__).parents[2] / "claims" / "test_c4_alpha_depth.py"
DETERMINISTIC = """
import torch

def make():  # every weight from the generator: the same model hash in every process
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                              torch.nn.ReLU(), torch.nn.Linear(32, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / 4)
    x = torch.randn(400, 8, generator=g)
    return net, (x, (x[:, 0] > 0).long())
"""


def _old_entry(cache: Path) -> Path:
    folder = cache / "activations" / "zz"
    folder.mkdir(parents=True)
    old = folder / ("0" * 64 + ".pact")
    old.write_bytes(b"x" * 4096)
    stamp = time.time() - 86400
    os.utime(old, (stamp, stamp))
    return old


@pytest.fixture
def c4_project(project: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(C4, project.path / "test_c4.py")
    project.makepyfile(det_factory=DETERMINISTIC)
    return project


def test_cap_evicts_old_entries_and_keeps_this_runs(c4_project: pytest.Pytester) -> None:
    cache = c4_project.path / "cache"
    old = _old_entry(cache)
    args = ("--model=det_factory:make", "--profile=quick", "--no-reports", f"--cache-dir={cache}")
    result = c4_project.runpytest(*args, "--cache-max-gb=0")
    assert result.ret in (0, 1), result.stdout.str()[-2000:]  # verdicts are the model's business
    out = result.stdout.str()
    assert not old.exists()
    kept = [p for p in (cache / "activations").rglob("*.pact")]
    assert kept, "this run's own entries were evicted"
    notes = [ln for ln in result.stdout.lines if ln.startswith("polyaudit cache: ")]
    assert any("evicted 1 least recently used entries" in ln for ln in notes), notes
    assert any("over --cache-max-gb 0" in ln and "raise the cap" in ln for ln in notes), notes
    assert "Traceback" not in out

    results = sorted((cache / "results").glob("*.json"))
    assert results
    # a warm rerun reads only the results entry: that one stays, the activations it did not need go
    time.sleep(1.5)  # past the cap's one-second slack for coarse file timestamps (cache_limit.py)
    again = c4_project.runpytest(*args, "--cache-max-gb=0")
    assert "4 served from the results cache; 0 forward pass(es)" in again.stdout.str()
    assert sorted((cache / "results").glob("*.json")) == results
    assert not list((cache / "activations").rglob("*.pact"))


def test_env_var_sets_the_cap(c4_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = c4_project.path / "cache"
    old = _old_entry(cache)
    args = ("--model=det_factory:make", "--profile=quick", "--no-reports", f"--cache-dir={cache}")
    c4_project.runpytest(*args)
    assert old.exists()  # no cap: nothing is evicted
    monkeypatch.setenv("POLYAUDIT_CACHE_MAX_GB", "1")
    c4_project.runpytest(*args)
    assert old.exists()  # well under 1 GB
    monkeypatch.setenv("POLYAUDIT_CACHE_MAX_GB", "0.000001")
    c4_project.runpytest(*args)
    assert not old.exists()
