"""Tracking against the frozen-code control (C2/C3 helper) and version 2's own-versus-mismatch matrix.
(C6's layer-permutation tests lived here; `c6.layer_permutation_p` is gone with C6's new test.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyaudit.analyses.alignment import (
    Tracking,
    alignment_matrix,
    contrast,
    expanded_interval,
    expanded_p,
    tracking_test,
)
from polyaudit.errors import PolyauditError
from polyaudit.stats import spearman


def _test(cross: np.ndarray, change: np.ndarray, frozen: np.ndarray, seed: int = 0) -> Tracking:
    t = tracking_test(cross, change, frozen[None], n_boot=2000, rng=np.random.default_rng(seed))
    assert isinstance(t, Tracking)
    return t


def test_matrix_entries_are_spearman_correlations() -> None:
    rng = np.random.default_rng(0)
    c, s = rng.integers(0, 4, (5, 9)), rng.random((5, 9))
    c[:, 0] = 7  # rows vary
    r = alignment_matrix(c, s)
    for i in range(5):
        for j in range(5):
            assert r[i, j] == pytest.approx(spearman(c[j].astype(float), s[i]))
    effect, own, mismatch = contrast(r)
    assert own == pytest.approx(np.mean(np.diag(r)))
    assert mismatch == pytest.approx((r.sum() - np.trace(r)) / 20)
    assert effect == pytest.approx(own - mismatch)


def test_boundaries_that_change_nothing_give_exactly_zero() -> None:
    """The control equals the real change (inert boundaries): whatever the geometry makes the
    plain tracking, the effect, its CI and p say nothing is there."""
    rng = np.random.default_rng(1)
    steps = np.arange(12.0)
    cross = rng.poisson(0.5 * steps, (40, 12))
    change = steps * (1 + rng.random((40, 12)))
    t = _test(cross, change, change.copy())
    assert t.own_mean > 0.3  # the version-1 statistic would call this an effect
    assert t.effect == 0.0 and t.interval(0.95) == (0.0, 0.0) and t.p == 1.0


def test_shared_geometry_alone_gives_no_effect() -> None:
    """Crossings and change both grow along the grid; the control shares that growth (and its own
    noise): no effect."""
    rng = np.random.default_rng(2)
    steps = np.arange(12.0)
    cross = rng.poisson(0.5 * steps, (60, 12))
    change = steps * (1 + rng.random((60, 12)))
    frozen = steps * (1 + rng.random((60, 12)))
    t = _test(cross, change, frozen, 2)
    assert abs(t.effect) < 0.1 and t.p > 0.05
    lo, hi = t.interval(0.95)
    assert lo <= t.effect <= hi


def test_boundaries_driving_the_change_give_an_effect() -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(12.0)
    cross = rng.poisson(0.5 * steps, (60, 12))
    frozen = steps + rng.random((60, 12))
    change = frozen + 3 * cross
    t = _test(cross, change, frozen, 3)
    assert t.effect > 0.1 and t.interval(0.95)[0] > 0 and t.p < 0.01 and t.own_mean > t.frozen_mean


def test_too_few_varying_polylines_is_a_reason_not_a_number() -> None:
    cross = np.zeros((10, 6))
    cross[:2, 0] = 1
    out = tracking_test(cross, np.random.default_rng(0).random((10, 6)), np.ones((1, 10, 6)), n_boot=100,
                        rng=np.random.default_rng(0), min_polylines=8)
    assert isinstance(out, str) and "only 2 of 10" in out
    with pytest.raises(PolyauditError):
        tracking_test(cross, np.ones((10, 6)), np.ones((10, 6)), n_boot=10, rng=np.random.default_rng(0))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 40))
def test_the_interval_excludes_zero_exactly_when_p_is_below_its_level(seed: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    boot = rng.normal(rng.normal(0.0, 0.1), 0.05, 2000)
    p = expanded_p(boot, m)
    for level in (0.9, 0.95, 0.99, 0.999):
        lo, hi = expanded_interval(boot, m)(level)
        if p < (1 - level) * 0.8:  # slack: the +1 correction of the bootstrap p
            assert lo > 0 or hi < 0
        if p > (1 - level) * 1.25:
            assert lo <= 0 <= hi


def test_the_expanded_interval_is_wider_than_the_percentile_one() -> None:
    boot = np.random.default_rng(0).normal(0.2, 0.05, 2000)
    lo, hi = expanded_interval(boot, 10)(0.95)
    plo, phi = np.quantile(boot, [0.025, 0.975])
    assert lo < plo and hi > phi
