"""C5 and C6 end to end: the single-checkpoint C5 and C6 on every family's tiny checkpoint through
`--model`, C5 on zoo dropout families through `--family`, and bad `--family` values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = ("test_c5_unit_dropout.py", "test_c5_dropout_family.py", "test_c6_action_alpha.py")
MEASURED = {"PASS", "FAIL", "INCONCLUSIVE"}


@pytest.fixture
def coding_project(pytester: pytest.Pytester) -> pytest.Pytester:
    for name in CLAIMS:
        shutil.copy(ROOT / "claims" / name, pytester.path / name)
    return pytester


def _audit(p: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    out = p.path / f"audit-{len(list(p.path.glob('audit-*.json')))}.json"
    result = p.runpytest(*args, "--profile=quick", f"--json={out}", "--no-reports", "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    return result, json.loads(out.read_text())


def test_single_checkpoint_c5_and_c6_on_every_family(coding_project: pytest.Pytester,
                                                     tiny_models: dict[str, Path]) -> None:
    families = ("gpt2", "gpt_neox", "llama", "opt", "bert")
    _result, doc = _audit(coding_project, *(f"--model={tiny_models[f]}" for f in families))
    by_model: dict[str, dict[tuple[str, str], dict]] = {}
    for row in doc["rows"]:
        by_model.setdefault(row["model"], {})[(row["test_id"].split("[")[0], row["site"])] = row
    assert set(by_model) == set(families)
    for family, rows in by_model.items():
        unit = rows[("C5-unit-dropout", "mlp_out")]
        assert unit["verdict"] in MEASURED, (family, unit["notes"])
        assert unit["n"] == 2 and "corollary" in unit["notes"]
        assert unit["details"]["task"] == ("self_token" if family == "bert" else "next_token")
        assert [layer["layer"] for layer in unit["details"]["layers"]] == [0, 1, 2]
        assert all(np.isfinite(layer["loss_increase"]) for layer in unit["details"]["layers"])
        for site in ("resid", "mlp_pre"):
            c6 = rows[("C6-action-alpha", site)]
            if c6["verdict"] == "SKIPPED":  # a finding: the responses to the circle span too few dimensions
                assert "too few dimensions for a power-law fit" in c6["notes"], (family, site, c6["notes"])
                continue
            assert c6["verdict"] in MEASURED, (family, site, c6["notes"])
            assert c6["details"]["stimulus"]["stimulus"] == "embedding circle"
            assert c6["details"]["n_proj"] == 1000
            layers = c6["details"]["layers"]
            assert len(layers) == 3 and all(layer["action"] > 0 for layer in layers)
            lo, hi = c6["ci"]
            assert lo <= c6["effect"] <= hi and c6["p"] <= c6["p_adj"] <= 1
        skipped = [r for (test, _), r in rows.items() if test.startswith("C5-dropout")]
        assert len(skipped) == 5 and all(r["verdict"] == "SKIPPED" for r in skipped)
        assert all("no dropout family" in r["notes"] and "--family" in r["notes"] for r in skipped)


@pytest.mark.parametrize(
    ("spec", "rates", "n_layers", "metric"),
    [("zoo:mlp-digits?width=32&depth=2&rates=0,0.4,0.8&seeds=2", [0, 0, 0.4, 0.4, 0.8, 0.8], 2, "accuracy"),
     ("zoo:conv-ae-digits?seeds=1", [0, 0.2, 0.4, 0.6, 0.8], 5, "mse")],
)
def test_dropout_family_on_the_zoo(coding_project: pytest.Pytester, spec: str, rates: list[float],
                                   n_layers: int, metric: str) -> None:
    result, doc = _audit(coding_project, f"--family={spec}", "-k", "more_dropout")
    rows = doc["rows"]
    stats = ("robustness", "noise", "ablation", "alpha")
    assert len(rows) == len(stats) * n_layers + 1  # input dropout: one row per family, at its first layer
    fam_id = rows[0]["model"]
    assert fam_id.startswith("family-zoo:")
    ids = {r["test_id"] for r in rows}
    assert {f"C5-dropout-{s}[{fam_id}:blocks.{i}.resid]" for s in stats for i in range(n_layers)} <= ids
    assert f"C5-dropout-input[{fam_id}:blocks.0.resid]" in ids
    for row in rows:
        # a layer whose spectrum is rank-deficient in one model (dead ReLUs) is an ERROR row, and
        # says so
        measurable = "alpha" not in row["test_id"] or row["site"] in ("blocks.0.resid", "blocks.1.resid")
        assert row["verdict"] in (MEASURED if measurable else MEASURED | {"ERROR"}), (row["test_id"], row["notes"])
        if row["verdict"] in MEASURED:
            assert row["n"] == len(rates) and row["details"]["rates"] == rates
            assert row["p"] <= row["p_adj"] <= 1
    robust = [r for r in rows if "dropout-robustness" in r["test_id"]]
    assert all(r["details"]["metric"] == metric and r["details"]["manipulation_check"] for r in robust)
    assert all(r["details"]["capacity_bound"] == pytest.approx([0.8, 0.6, 0.4, 0.2]) for r in robust)
    members = doc["model"]["members"]
    assert [m["rate"] for m in members] == rates and len(members[0]["sha256"]) == 64
    assert "family" in result.stdout.str()


@pytest.mark.parametrize(
    ("value", "needle"),
    [("zoo:mlp-digits?dropout=0.2", "a family varies dropout"),
     ("0.0=./missing_a,0.4=./missing_b,0.8=./missing_c", "missing_a"),
     ("zoo:mlp-digits?rates=0,0.5", "at least 3")],
)
def test_bad_family_is_one_line(coding_project: pytest.Pytester, value: str, needle: str) -> None:
    result = coding_project.runpytest(f"--family={value}", "--no-reports")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [ln for ln in result.stderr.lines if ln.startswith("ERROR:")]
    assert len(lines) == 1 and needle in lines[0], result.stderr.lines
    assert "Traceback" not in result.stderr.str() + result.stdout.str()

