"""Evidence -> Verdict: the CI and the adjusted p decide; garbage is ERROR, never FAIL."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyaudit.verdict import Evidence, Status, decide, evidence_from_dict, evidence_to_dict


def ev(effect: float, lo: float, hi: float, p: float = 0.001, **kw: Any) -> Evidence:
    return Evidence("C0", 1, "site", "stat", effect, (lo, hi), p, 100, **kw)


@pytest.mark.parametrize(
    ("evidence", "status"),
    [
        # predicted positive
        (ev(0.5, 0.2, 0.8), Status.PASS),
        (ev(-0.5, -0.8, -0.2), Status.FAIL),  # CI excludes 0 on the wrong side
        (ev(0.1, -0.2, 0.4, p=0.4), Status.INCONCLUSIVE),  # CI straddles 0
        (ev(0.5, 0.2, 0.8, p=0.2), Status.INCONCLUSIVE),  # CI excludes 0 but p is not small
        (ev(0.5, 0.2, 0.8, p=0.001, p_adj=0.2), Status.INCONCLUSIVE),  # the adjusted p is what counts
        (ev(0.5, 0.2, 0.8, p=0.2, p_adj=0.01), Status.PASS),
        (ev(0.1, 0.02, 0.2, p=0.2, min_effect=0.3), Status.FAIL),  # whole CI below the minimum
        (ev(0.2, -0.1, 0.5, p=0.3, min_effect=0.3), Status.INCONCLUSIVE),  # CI reaches the minimum
        # predicted negative: the mirror image
        (ev(-0.5, -0.8, -0.2, predicted="negative"), Status.PASS),
        (ev(0.5, 0.2, 0.8, predicted="negative"), Status.FAIL),
        (ev(-0.1, -0.4, 0.2, p=0.4, predicted="negative"), Status.INCONCLUSIVE),
        (ev(-0.1, -0.2, -0.02, p=0.2, predicted="negative", min_effect=0.3), Status.FAIL),
        # predicted nonzero: either sign passes
        (ev(-0.5, -0.8, -0.2, predicted="nonzero"), Status.PASS),
        (ev(0.5, 0.2, 0.8, predicted="nonzero"), Status.PASS),
        (ev(0.5, 0.2, 0.8, p_adj=0.06, predicted="nonzero"), Status.INCONCLUSIVE),
        (ev(0.05, -0.1, 0.2, p=0.5, predicted="nonzero", min_effect=0.3), Status.FAIL),  # inside the band
        (ev(0.05, -0.1, 0.4, p=0.5, predicted="nonzero", min_effect=0.3), Status.INCONCLUSIVE),
        (ev(0.05, -0.1, 0.2, p=0.5, predicted="nonzero"), Status.INCONCLUSIVE),  # no band declared
    ],
)
def test_decide(evidence: Evidence, status: Status) -> None:
    verdict = decide(evidence)
    assert verdict.status is status
    assert verdict.reason


@pytest.mark.parametrize(
    "evidence",
    [
        ev(math.nan, 0.2, 0.8),
        ev(0.5, -math.inf, 0.8),
        ev(0.5, 0.2, 0.8, p=math.nan),
        ev(0.5, 0.2, 0.8, p_adj=math.nan),
        ev(0.5, 0.8, 0.2),  # inverted CI
        Evidence.failed("C0", 1, "s", "x", "degenerate fit"),
    ],
)
def test_unmeasurable_evidence_is_error_never_fail(evidence: Evidence) -> None:
    assert decide(evidence).status is Status.ERROR


def test_error_and_skip_carry_their_reason() -> None:
    assert decide(Evidence.failed("C0", 1, "s", "x", "degenerate fit")).reason == "degenerate fit"
    skipped = decide(Evidence.skipped("C0", 1, "s", "x", "not a ReLU net"))
    assert skipped.status is Status.SKIPPED and skipped.reason == "not a ReLU net"
    both = ev(0.5, 0.2, 0.8, error="nan activations", skip="no family")
    assert decide(both).status is Status.SKIPPED  # a claim that does not apply is not measured


def test_significance_level_is_honoured() -> None:
    e = ev(0.5, 0.2, 0.8, p=0.03)
    assert decide(e, alpha=0.05).status is Status.PASS
    assert decide(e, alpha=0.01).status is Status.INCONCLUSIVE


@given(
    effect=st.floats(-2, 2), half=st.floats(0, 1), p=st.floats(0, 1),
    predicted=st.sampled_from(["positive", "negative", "nonzero"]),
)
def test_pass_needs_the_predicted_sign_and_significance(effect: float, half: float, p: float,
                                                        predicted: str) -> None:
    e = ev(effect, effect - half, effect + half, p=p, predicted=predicted)
    status = decide(e).status
    assert status is not Status.ERROR
    if status is Status.PASS:
        assert p < 0.05
        lo, hi = e.ci
        assert {"positive": lo > 0, "negative": hi < 0, "nonzero": lo > 0 or hi < 0}[predicted]
    if status is Status.FAIL:
        assert predicted != "nonzero" or e.min_effect is not None


@pytest.mark.parametrize("predicted", ["positive", "nonzero"])
def test_a_significant_but_too_small_effect_does_not_pass(predicted: str) -> None:
    tiny = ev(0.07, 0.05, 0.1, p=0.001, predicted=predicted, min_effect=0.3)
    assert decide(tiny).status is Status.FAIL


def test_numpy_scalars_are_numbers() -> None:
    e = ev(np.float32(0.5), np.float32(0.2), np.float32(0.8))  # type: ignore[arg-type]
    assert decide(e).status is Status.PASS


def test_evidence_round_trips_through_json_form() -> None:
    e = ev(0.5, 0.2, 0.8, p_adj=0.01, details={"a": [1, 2]})
    assert evidence_from_dict(evidence_to_dict(e)) == e
    back = evidence_from_dict(evidence_to_dict(Evidence.failed("C0", 1, "s", "x", "why")))
    assert back.error == "why" and math.isnan(back.effect)
