"""--correction holm|bh end to end (pytester): the adjusted p-values in the rows are the chosen
method's adjustment of the claim's raw p-values, the report header and the results-cache key carry
the method, and a bad value is a one-line usage error."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from polyaudit.stats import benjamini_hochberg, holm

ROOT = Path(__file__).resolve().parents[2]
C4 = ROOT / "claims" / "test_c4_alpha_depth.py"
ARGS = ("--model=wide_mod:make", "--profile=quick", "--no-reports", "-p", "no:cacheprovider")
WIDE = textwrap.dedent(
    """
    import torch

    def make():  # a random 4-layer ReLU MLP on 48-dim inputs: both C4 sites resolve a spectrum
        g = torch.Generator().manual_seed(0)
        layers, d_in = [], 48
        for _ in range(4):
            lin = torch.nn.Linear(d_in, 48)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * (2 / d_in) ** 0.5)
                lin.bias.zero_()
            layers += [lin, torch.nn.ReLU()]
        head = torch.nn.Linear(48, 3)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=g) / 48 ** 0.5)
            head.bias.zero_()
        layers.append(head)
        x = torch.randn(600, 48, generator=g) * torch.arange(1, 49) ** -0.5
        return torch.nn.Sequential(*layers), (x, (x[:, 0] > 0).long())
    """
)


@pytest.fixture
def c4_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(wide_mod=WIDE)
    pytester.syspathinsert()
    shutil.copy(C4, pytester.path / "test_c4_alpha_depth.py")
    return pytester


def _run(p: pytest.Pytester, *extra: str) -> tuple[pytest.RunResult, dict]:
    out = p.path / f"audit-{len(list(p.path.glob('audit-*.json')))}.json"
    result = p.runpytest(*ARGS, f"--json={out}", *extra)
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    return result, json.loads(out.read_text())


def test_rows_carry_the_chosen_adjustment(c4_project: pytest.Pytester, tmp_path: Path) -> None:
    cache = f"--cache-dir={tmp_path / 'cache'}"
    first, default = _run(c4_project, cache)
    second, bh = _run(c4_project, cache, "--correction=bh")
    assert default["correction"] == "holm" and bh["correction"] == "bh"
    for doc, adjust in ((default, holm), (bh, benjamini_hochberg)):
        rows = sorted(doc["rows"], key=lambda r: r["site"])
        assert [r["site"] for r in rows] == ["mlp_pre", "resid"]  # C4 spans two sites
        assert all(r["verdict"] != "ERROR" for r in rows), [r["notes"] for r in rows]
        raw = np.array([r["p"] for r in rows])
        np.testing.assert_allclose([r["p_adj"] for r in rows], adjust(raw))
    # the same raw numbers: only the adjustment differs
    assert sorted(r["p"] for r in default["rows"]) == sorted(r["p"] for r in bh["rows"])
    # (each count is the model's and its three control twins' measurements)
    # the method is part of the results-cache key: the bh run is computed, not served from holm's entry
    assert "4 claim measurement(s) computed" in first.stdout.str()
    assert "4 claim measurement(s) computed, 0 served" in second.stdout.str()
    third, again = _run(c4_project, cache, "--correction=bh")
    assert "0 claim measurement(s) computed, 4 served" in third.stdout.str()
    assert [r["p_adj"] for r in again["rows"]] == [r["p_adj"] for r in bh["rows"]]
    assert "correction bh" in third.stdout.str()  # terminal header


def test_bad_correction_is_one_line(c4_project: pytest.Pytester) -> None:
    result = c4_project.runpytest(*ARGS, "--correction=bonferroni")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    lines = [ln for ln in result.stderr.lines if ln.startswith("ERROR:")]
    assert len(lines) == 1 and "bonferroni" in lines[0] and "holm" in lines[0], result.stderr.lines
