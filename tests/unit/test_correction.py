"""Multiple comparisons across a claim's rows: `adjust_evidence` with Holm (default) or
Benjamini-Hochberg on known p-values, and the verdict follows the adjusted p, not the raw one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyaudit.claimspec import adjust_evidence
from polyaudit.errors import PolyauditError
from polyaudit.verdict import Evidence, Status, decide

RAW = {"a": 0.01, "b": 0.02, "c": 0.03, "d": 0.04}
# Holm: sorted p x (4, 3, 2, 1), running max -> 0.04, 0.06, 0.06, 0.06
# BH:   sorted p x 4 / (1, 2, 3, 4), running min from the top -> 0.04 each
HOLM = {"a": 0.04, "b": 0.06, "c": 0.06, "d": 0.06}
BH = {"a": 0.04, "b": 0.04, "c": 0.04, "d": 0.04}


def _rows() -> dict[str, Evidence]:
    rows = {k: Evidence("C9", 1, k, "stat", effect=0.5, ci=(0.1, 0.9), p=p, n=50) for k, p in RAW.items()}
    rows["err"] = Evidence.failed("C9", 1, "err", "stat", "degenerate")
    rows["skip"] = Evidence.skipped("C9", 1, "skip", "stat", "does not apply")
    return rows


@pytest.mark.parametrize(("method", "expected"), [("holm", HOLM), ("bh", BH)])
def test_adjusted_p_values_by_hand(method: str, expected: dict[str, float]) -> None:
    out = adjust_evidence(_rows(), method=method)
    got = {k: out[k].p_adj for k in RAW}
    assert got == pytest.approx(expected)
    assert out["err"].p_adj is None and out["skip"].p_adj is None  # left as they are
    assert math.isnan(out["err"].p)


def test_default_is_holm_and_the_verdict_uses_the_adjusted_p() -> None:
    holm_rows = adjust_evidence(_rows())
    bh_rows = adjust_evidence(_rows(), method="bh")
    holm_verdicts = {k: decide(holm_rows[k]).status for k in RAW}
    bh_verdicts = {k: decide(bh_rows[k]).status for k in RAW}
    # every raw p < 0.05 and every CI excludes 0, yet under Holm only the smallest survives
    assert holm_verdicts == {"a": Status.PASS, "b": Status.INCONCLUSIVE, "c": Status.INCONCLUSIVE,
                             "d": Status.INCONCLUSIVE}
    assert set(bh_verdicts.values()) == {Status.PASS}
    assert all(decide(ev).status is Status.PASS for k, ev in _rows().items() if k in RAW)  # unadjusted


def test_bh_never_exceeds_holm_on_random_rows() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, rng.integers(2, 10))
        rows = {str(i): Evidence("C9", 1, str(i), "s", 0.1, (0.0, 0.2), float(v), 10) for i, v in enumerate(p)}
        h, b = adjust_evidence(rows), adjust_evidence(rows, method="bh")
        assert all(b[k].p_adj <= h[k].p_adj + 1e-12 for k in rows)  # type: ignore[operator]


def test_unknown_method_is_refused() -> None:
    with pytest.raises(PolyauditError, match="holm or bh"):
        adjust_evidence(_rows(), method="bonferroni")
