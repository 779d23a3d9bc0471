"""stats: multiple comparisons, correlations, effect sizes, bootstrap and permutation p-values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from polyaudit.errors import PolyauditError
from polyaudit.stats import (
    adjust,
    benjamini_hochberg,
    bootstrap_p_value,
    bootstrap_resamples,
    cliffs_delta,
    cliffs_delta_with_ci,
    holm,
    percentile_ci,
    permutation_p_value,
    spearman,
    spearman_with_ci,
)

pvals = st.lists(st.floats(0, 1), min_size=1, max_size=30)


def test_holm_and_bh_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust(p, "bh"), benjamini_hochberg(p))
    with pytest.raises(PolyauditError):
        adjust(p, "bonferroni-ish")


@given(pvals)
def test_adjusted_p_values_are_valid(p: list[float]) -> None:
    arr = np.array(p)
    for adj in (holm(arr), benjamini_hochberg(arr)):
        assert np.all(adj >= arr - 1e-12) and np.all(adj <= 1)
        order = np.argsort(arr, kind="stable")
        assert np.all(np.diff(adj[order]) >= -1e-12)  # monotone in p
    assert np.all(benjamini_hochberg(arr) <= holm(arr) + 1e-12)


@settings(max_examples=30)
@given(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=40), st.integers(0, 1000))
def test_spearman_matches_scipy(x: list[float], seed: int) -> None:
    y = np.random.default_rng(seed).standard_normal(len(x))
    if np.ptp(x) == 0:
        with pytest.raises(PolyauditError):
            spearman(x, y)
        return
    assert spearman(x, y) == pytest.approx(sst.spearmanr(x, y).statistic, abs=1e-9)


def test_spearman_with_ci_brackets_a_strong_trend() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(40.0)
    rho, lo, hi, p = spearman_with_ci(x, x + rng.normal(0, 3, 40), 300, rng)
    assert lo <= rho <= hi and lo > 0.8 and p < 0.01


@settings(max_examples=30)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=15), st.lists(st.integers(-5, 5), min_size=1, max_size=15))
def test_cliffs_delta_matches_brute_force(a: list[int], b: list[int]) -> None:
    brute = np.mean([[np.sign(x - y) for y in b] for x in a])
    assert cliffs_delta(a, b) == pytest.approx(brute)


def test_cliffs_delta_ci() -> None:
    rng = np.random.default_rng(1)
    d, lo, hi, p = cliffs_delta_with_ci(rng.normal(1, 1, 80), rng.normal(0, 1, 80), 300, rng)
    assert lo <= d <= hi and lo > 0 and 0 < p < 0.05


def test_bootstrap_ci_coverage_is_near_nominal() -> None:
    """Coverage of the percentile CI of a mean over 200 seeds: nominal 95%; a binomial(200, 0.95)
    count falls below 180 with probability < 0.2%, and the percentile interval undercovers a little
    at n=50, so >= 175 is the check."""
    hits = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        x = rng.normal(3.0, 2.0, 50)
        reps = [x[idx].mean() for idx in bootstrap_resamples(50, 200, rng)]
        lo, hi = percentile_ci(reps)
        hits += lo <= 3.0 <= hi
    assert hits >= 175


def test_cluster_bootstrap_keeps_groups_whole() -> None:
    groups = np.repeat(np.arange(5), 4)
    for idx in bootstrap_resamples(20, 20, np.random.default_rng(0), groups=groups):
        counts = np.bincount(groups[idx], minlength=5)
        assert np.all(counts % 4 == 0) and counts.sum() == 20


def test_p_values_are_in_unit_interval_and_ordered() -> None:
    assert 0 < bootstrap_p_value(np.linspace(0.1, 1, 100)) < 0.05
    assert bootstrap_p_value(np.linspace(-1, 1, 101)) == pytest.approx(1.0)
    null = np.random.default_rng(0).standard_normal(999)
    assert permutation_p_value(5.0, null) == pytest.approx(1 / 1000)
    assert permutation_p_value(-5.0, null, "less") == pytest.approx(1 / 1000)
    assert 0.9 < permutation_p_value(0.0, null, "two-sided") <= 1


def test_too_many_undefined_replicates_is_an_error() -> None:
    with pytest.raises(PolyauditError):
        percentile_ci([np.nan] * 20 + [1.0] * 80)
