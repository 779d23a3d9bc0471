"""Depth-trend statistics (polyaudit.analyses.depth): the random-effects meta-regression of C4 and the
first-difference trend of C5 (single checkpoint) and C6, on planted truth and on their nulls."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from polyaudit.analyses.depth import (
    difference_trend,
    meta_regression,
    relative_depth,
    spearman_interval,
    too_few_pairs,
)
from polyaudit.errors import PolyauditError


def test_relative_depth_runs_from_zero_to_one() -> None:
    assert relative_depth(5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(PolyauditError):
        relative_depth(1)


def test_meta_regression_recovers_a_planted_line_without_scatter() -> None:
    x = relative_depth(8)
    y = -1.2 + 0.4 * x
    m = meta_regression(y, np.diag(np.full(8, 1e-4)), x)
    assert m.slope == pytest.approx(0.4, abs=1e-9) and m.intercept == pytest.approx(-1.2, abs=1e-9)
    assert m.tau2 == 0.0 and m.df == 6
    # no residual: Knapp-Hartung's scale is truncated at 1, so the SE is the model-based one
    assert m.se == pytest.approx(math.sqrt(1e-4 / np.sum((x - x.mean()) ** 2)), rel=1e-6)
    assert m.weights @ y == pytest.approx(m.slope)


def test_meta_regression_equals_ols_t_test_when_scatter_dominates() -> None:
    """With negligible within-layer error the model is ordinary regression: the slope, its SE and
    p are the OLS ones (Knapp-Hartung's q is the residual variance over tau^2 + S)."""
    rng = np.random.default_rng(3)
    x = relative_depth(10)
    y = 0.3 * x + 0.2 * rng.standard_normal(10)
    m = meta_regression(y, np.eye(10) * 1e-10, x)
    ols = stats.linregress(x, y)
    assert m.slope == pytest.approx(ols.slope, rel=1e-5)
    assert m.se == pytest.approx(ols.stderr, rel=1e-3)
    assert m.p == pytest.approx(ols.pvalue, rel=1e-3)


def test_meta_regression_weights_precise_layers_more() -> None:
    x = relative_depth(5)
    y = np.array([0.0, 0.1, 0.2, 0.3, 1.4])  # the last layer is off the line and imprecise
    s = np.diag([1e-4, 1e-4, 1e-4, 1e-4, 1.0])
    assert meta_regression(y, s, x).slope == pytest.approx(0.4, abs=0.05)


@pytest.mark.parametrize("n_layers", [4, 10])
def test_meta_regression_type_one_error_and_coverage(n_layers: int) -> None:
    """Layers scattered about a line (tau in 0 .. 0.2) with unequal known sampling errors: the
    test rejects a true slope at most at its level, and its 95% interval covers it."""
    rng = np.random.default_rng(n_layers)
    x = relative_depth(n_layers)
    reject = cover = 0
    draws = 250
    for _ in range(draws):
        se = rng.uniform(0.005, 0.02, n_layers)
        y = -1 + 0.3 * x + rng.choice([0.0, 0.01, 0.05, 0.2]) * rng.standard_normal(n_layers) + se * rng.standard_normal(n_layers)
        m = meta_regression(y - 0.3 * x, np.diag(se**2), x)
        reject += m.p < 0.05
        lo, hi = meta_regression(y, np.diag(se**2), x).interval(0.95)
        cover += lo <= 0.3 <= hi
    assert reject / draws <= 0.07 and cover / draws >= 0.93


def test_meta_regression_refuses_bad_input() -> None:
    x = relative_depth(3)
    with pytest.raises(PolyauditError):
        meta_regression(np.zeros(2), np.eye(2), x[:2])
    with pytest.raises(PolyauditError):
        meta_regression(np.array([0.0, np.nan, 1.0]), np.eye(3), x)


def test_difference_trend_on_planted_changes() -> None:
    rng = np.random.default_rng(0)
    steps = rng.standard_normal(11)
    x = np.concatenate([[0.0], np.cumsum(steps)])
    y = np.concatenate([[5.0], 5.0 + np.cumsum(2.0 * steps)])  # every change doubled
    t = difference_trend(x, y, rng)
    assert t is not None and t.rho == pytest.approx(1.0) and t.n_pairs == 11
    assert t.p < 0.001 and not any(t.exact)
    lo, hi = t.interval(0.95)
    assert 0.9 < lo <= hi <= 1.0


def test_difference_trend_ignores_a_shared_trend() -> None:
    """Both profiles rise with depth, their wiggles are unrelated: levels correlate perfectly,
    changes do not."""
    rng = np.random.default_rng(1)
    depth = np.arange(8.0)
    x, y = depth + 0.3 * rng.standard_normal(8), 2 * depth + 0.6 * rng.standard_normal(8)
    assert stats.spearmanr(x, y)[0] > 0.9
    t = difference_trend(x, y, rng)
    assert t is not None and t.p > 0.05


def test_exact_permutation_p_values() -> None:
    """7 layers: both tests enumerate every ordering; p counts orderings at least as extreme."""
    x = np.array([0.0, 1.0, 0.5, 2.0, 1.0, 3.0, 2.5])
    y = np.array([1.0, 3.0, 2.0, 5.0, 3.0, 7.5, 6.0])
    t = difference_trend(x, y, np.random.default_rng(0))
    assert t is not None and t.exact == (True, True) and t.orderings == (720, 5040)
    dx, dy = np.diff(x), np.diff(y)
    rho = stats.spearmanr(dx, dy)[0]
    hits = sum(abs(stats.spearmanr(dx[list(p)], dy)[0]) >= abs(rho) - 1e-12 for p in itertools.permutations(range(6)))
    assert t.rho == pytest.approx(rho) and t.p_differences == pytest.approx(hits / 720)
    assert t.p == max(t.p_differences, t.p_levels)


@pytest.mark.parametrize("kind", ["random order", "random walks"])
def test_difference_trend_holds_its_level_on_both_nulls(kind: str) -> None:
    """Independent profiles in random order (differences negatively autocorrelated: permuting the
    differences alone is anti-conservative) and independent random walks (permuting the levels
    alone is wrong): p = max of both stays at its level."""
    rng = np.random.default_rng(7)
    draws, rejects = 300, 0
    for _ in range(draws):
        a, b = rng.standard_normal((2, 7))
        if kind == "random walks":
            a, b = np.cumsum(a), np.cumsum(b)
        t = difference_trend(a, b, rng)
        rejects += t is not None and t.p < 0.05
    assert rejects / draws <= 0.06


def test_difference_trend_undefined_cases() -> None:
    rng = np.random.default_rng(0)
    assert difference_trend(np.arange(2.0), np.arange(2.0), rng) is None
    linear = np.arange(6.0) * 0.2  # constant changes
    assert difference_trend(linear, rng.standard_normal(6), rng, x_resolution=1e-12) is None
    almost = linear + 1e-5 * rng.standard_normal(6)  # changes equal within the resolution
    assert difference_trend(almost, rng.standard_normal(6), rng, x_resolution=1e-3) is None
    with pytest.raises(PolyauditError):
        difference_trend(np.array([0.0, np.inf, 1.0]), np.zeros(3), rng)


@settings(max_examples=30, deadline=None)
@given(st.floats(-0.99, 0.99), st.integers(4, 40), st.floats(0.5, 0.99))
def test_spearman_interval_contains_the_estimate_and_nests(rho: float, n: int, level: float) -> None:
    at = spearman_interval(rho, n)
    lo, hi = at(level)
    lo2, hi2 = at(min(0.999, level + 0.005))
    assert -1 <= lo2 <= lo <= rho + 1e-9 and rho - 1e-9 <= hi <= hi2 <= 1


def test_spearman_interval_without_enough_pairs_is_everything() -> None:
    assert spearman_interval(0.9, 3)(0.95) == (-1.0, 1.0)


def test_too_few_pairs_note() -> None:
    assert "cannot reach significance" in too_few_pairs(4) and too_few_pairs(5) == ""
