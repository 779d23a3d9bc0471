"""The gate's rules on rows (no pytest run): keys, model pairing, paired and unpaired CIs,
directions, tolerances."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyaudit.errors import PolyauditError
from polyaudit.report.baseline import compare_rows, pair_models, parse_tolerances, row_key
from polyaudit.serial import encode_array


def _row(effect: float, *, sd: float = 0.05, verdict: str = "PASS", model: str = "m", site: str = "resid",
         predicted: str = "positive", seed: int = 0, boot: bool = True, probe: str = "p" * 64) -> dict[str, Any]:
    z = np.random.default_rng(seed).standard_normal(500)
    reps = effect + sd * z
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return {"claim": "C4", "claim_version": 1, "test_id": f"C4-alpha-depth[{model}:{site}]", "model": model,
            "site": site, "effect": effect, "ci": [float(lo), float(hi)], "verdict": verdict,
            "predicted": predicted, "probe_sha256": probe, "n": 500,
            "details": {"boot_effect": encode_array(reps)} if boot else {}}


def test_row_key_drops_the_model() -> None:
    assert row_key(_row(0.5, model="gpt2")) == "C4-alpha-depth[resid]"
    assert row_key({"test_id": "C1-purity[ckpt:mlp_pre.3-direction]", "model": "ckpt"}) == "C1-purity[mlp_pre.3-direction]"
    assert row_key({"test_id": "C5-dropout[zoo:mlp-digits]", "model": "zoo:mlp-digits"}) == "C5-dropout"
    assert row_key(_row(0.5, model="old-ckpt")) == row_key(_row(0.5, model="new-ckpt"))


def test_pair_models() -> None:
    assert pair_models(["old"], ["new"]) == {"new": "old"}
    assert pair_models(["a", "b"], ["b", "a"]) == {"a": "a", "b": "b"}
    assert pair_models(["a", "b"], ["a", "c"]) == {"a": "a", "c": "b"}
    assert pair_models(["a", "b"], ["c", "d"]) == {"c": None, "d": None}


def test_same_numbers_are_ok_and_paired() -> None:
    d = compare_rows(_row(0.6), _row(0.6), 0.1)
    assert d.status == "ok" and d.method == "paired" and d.n_pairs == 500
    assert d.drop == 0 and d.drop_ci == (0.0, 0.0)


def test_pairing_narrows_the_ci() -> None:
    """Shared resampling noise cancels when paired; an unpaired comparison must carry it twice."""
    paired = compare_rows(_row(0.8, sd=0.2), _row(0.55, sd=0.2), 0.1)
    unpaired = compare_rows(_row(0.8, sd=0.2), _row(0.55, sd=0.2), 0.1, same_seed=False)
    assert paired.method == "paired" and unpaired.method == "unpaired"
    assert paired.regressed and not unpaired.regressed


def test_unpaired_without_replicates_or_with_other_samples() -> None:
    other_units = _row(0.3)
    other_units["details"]["boot_units"] = "paths-b"
    base = _row(0.8)
    base["details"]["boot_units"] = "paths-a"
    assert compare_rows(base, other_units, 0.1).method == "unpaired"
    for new in (_row(0.3, boot=False), _row(0.3, probe="q" * 64), {**_row(0.3), "n": 7}):
        d = compare_rows(_row(0.8), new, 0.1)
        assert d.method == "unpaired" and d.regressed
        assert "unpaired: normal approximation" in d.paragraph()
    assert compare_rows(_row(0.8), _row(0.3), 0.1, same_seed=False).method == "unpaired"


def test_direction_follows_the_prediction() -> None:
    assert compare_rows(_row(-0.8, predicted="negative"), _row(-0.3, predicted="negative"), 0.1).regressed
    assert not compare_rows(_row(-0.3, predicted="negative"), _row(-0.8, predicted="negative"), 0.1).regressed
    # "nonzero": the direction the baseline established
    assert compare_rows(_row(-0.8, predicted="nonzero"), _row(-0.3, predicted="nonzero"), 0.1).regressed
    assert not compare_rows(_row(0.3, predicted="nonzero"), _row(0.8, predicted="nonzero"), 0.1).regressed


def test_verdict_flips_away_from_pass_only() -> None:
    for v in ("FAIL", "INCONCLUSIVE", "ERROR", "SKIPPED"):
        d = compare_rows(_row(0.6), _row(0.6, verdict=v), 10.0)
        assert d.regressed and d.reasons == ("verdict",)
    assert not compare_rows(_row(0.6, verdict="INCONCLUSIVE"), _row(0.6, verdict="FAIL"), 10.0).regressed
    err = _row(0.6, verdict="ERROR")
    err.update(effect=None, ci=[None, None], details={})
    d = compare_rows(_row(0.6), err, 0.1)
    assert d.regressed and d.drop is None and "no drop computed" in d.paragraph()


def test_new_row_has_no_baseline() -> None:
    d = compare_rows(None, _row(0.6), 0.1)
    assert d.status == "new" and not d.regressed


@given(st.floats(0.0, 1.0), st.floats(-1.0, 1.0), st.floats(0.0, 0.5))
def test_a_drop_within_tolerance_never_regresses(base: float, drop: float, tol: float) -> None:
    d = compare_rows(_row(base), _row(base - drop), tol)
    if drop <= tol:
        assert not d.regressed
    assert d.drop is not None and math.isclose(d.drop, drop, abs_tol=1e-9)


def test_tolerances_from_pyproject_and_command_line() -> None:
    t = parse_tolerances(["C4=0.3"], {"tolerance": {"default": 0.2, "C1": 0.05}})
    assert (t.for_claim("C4"), t.for_claim("C1"), t.for_claim("C2")) == (0.3, 0.05, 0.2)
    assert parse_tolerances(["0.4"], {"tolerance": 0.2}).for_claim("C9") == 0.4
    assert parse_tolerances().for_claim("C1") == 0.1
    for bad in (["C4=x"], ["-0.1"], ["=0.1"], ["nan"]):
        with pytest.raises(PolyauditError):
            parse_tolerances(bad)
    with pytest.raises(PolyauditError, match="must be a table"):
        parse_tolerances([], {"tolerance": "lots"})
