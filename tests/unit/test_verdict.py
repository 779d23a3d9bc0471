"""Evidence -> Verdict: the CI and the adjusted p decide; garbage is ERROR, never FAIL."""

from __future__ import annotations

import math

import pytest

from polyaudit.verdict import Evidence, Status, decide, evidence_from_dict, evidence_to_dict


def ev(effect: float, lo: float, hi: float, p: float = 0.001, **kw: object) -> Evidence:
    return Evidence("C0", 1, "site", "stat", effect, (lo, hi), p, 100, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("evidence", "status"),
    [
        (ev(0.5, 0.2, 0.8), Status.PASS),
        (ev(-0.5, -0.8, -0.2), Status.FAIL),
        (ev(0.1, -0.2, 0.4, p=0.4), Status.INCONCLUSIVE),
        (ev(0.5, 0.2, 0.8, p_adj=0.2), Status.INCONCLUSIVE),  # the adjusted p is what counts
        (ev(-0.5, -0.8, -0.2, predicted="negative"), Status.PASS),
        (ev(0.5, 0.2, 0.8, predicted="negative"), Status.FAIL),
        (ev(-0.5, -0.8, -0.2, predicted="nonzero"), Status.PASS),
        (ev(0.05, -0.1, 0.2, p=0.5, predicted="nonzero", min_effect=0.3), Status.FAIL),
        (ev(0.05, -0.1, 0.4, p=0.5, predicted="nonzero", min_effect=0.3), Status.INCONCLUSIVE),
        (ev(0.1, 0.02, 0.2, p=0.2, min_effect=0.3), Status.FAIL),
        (ev(math.nan, math.nan, math.nan), Status.ERROR),
        (ev(0.5, 0.8, 0.2), Status.ERROR),
        (Evidence.failed("C0", 1, "s", "x", "degenerate fit"), Status.ERROR),
        (Evidence.skipped("C0", 1, "s", "x", "not a ReLU net"), Status.SKIPPED),
    ],
)
def test_decide(evidence: Evidence, status: Status) -> None:
    assert decide(evidence).status is status


def test_error_is_never_fail() -> None:
    bad = ev(-0.5, -0.8, math.inf)
    assert decide(bad).status is Status.ERROR


def test_evidence_round_trips_through_json_form() -> None:
    e = ev(0.5, 0.2, 0.8, p_adj=0.01, details={"a": [1, 2]})
    assert evidence_from_dict(evidence_to_dict(e)) == e
    f = Evidence.failed("C0", 1, "s", "x", "why")
    back = evidence_from_dict(evidence_to_dict(f))
    assert back.error == "why" and math.isnan(back.effect)
