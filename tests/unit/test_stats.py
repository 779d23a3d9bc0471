"""stats: multiple comparisons by hand, correlations against scipy, effect sizes against brute force,
bootstrap coverage against the binomial, p-values in (0, 1], garbage refused."""

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
    huber_lines,
    percentile_ci,
    permutation_p_value,
    spearman,
    spearman_with_ci,
)

pvals = st.lists(st.floats(0, 1), min_size=1, max_size=30)


# ---- multiple comparisons ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "holm_adj", "bh_adj"),
    [
        # sorted 0.005, 0.01, 0.03, 0.04: Holm x4, x3, x2, x1 then running max; BH x4/1, 4/2, 4/3, 4/4
        # then running min from the top
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02], [0.02, 0.04, 0.04, 0.02]),
        ([0.5, 0.6, 0.9], [1.0, 1.0, 1.0], [0.9, 0.9, 0.9]),  # capped at 1; BH step-up
        ([0.02, 0.02], [0.04, 0.04], [0.02, 0.02]),  # ties
        ([0.3], [0.3], [0.3]),
    ],
)
def test_holm_and_bh_by_hand(p: list[float], holm_adj: list[float], bh_adj: list[float]) -> None:
    np.testing.assert_allclose(holm(p), holm_adj)
    np.testing.assert_allclose(benjamini_hochberg(p), bh_adj)
    np.testing.assert_allclose(adjust(p), holm_adj)
    np.testing.assert_allclose(adjust(p, "bh"), bh_adj)


@given(pvals)
def test_adjusted_p_values_are_valid(p: list[float]) -> None:
    arr = np.array(p)
    perm = np.random.default_rng(len(p)).permutation(arr.size)
    for f in (holm, benjamini_hochberg):
        adj = f(arr)
        assert np.all(adj >= arr - 1e-12) and np.all(adj <= 1)
        order = np.argsort(arr, kind="stable")
        assert np.all(np.diff(adj[order]) >= -1e-12)  # monotone in p
        np.testing.assert_allclose(f(arr[perm]), adj[perm])  # order of the input does not matter
    assert np.all(benjamini_hochberg(arr) <= holm(arr) + 1e-12)


def test_adjust_refuses_garbage() -> None:
    for bad in ([0.1, np.nan], [0.1, 1.5], [-0.01]):
        with pytest.raises(PolyauditError, match="p-values"):
            holm(bad)
        with pytest.raises(PolyauditError, match="p-values"):
            benjamini_hochberg(bad)
    with pytest.raises(PolyauditError, match="unknown correction"):
        adjust([0.1], "bonferroni-ish")


# ---- correlation and effect sizes ----------------------------------------------------------


@settings(max_examples=40)
@given(st.lists(st.integers(-4, 4), min_size=3, max_size=30), st.integers(0, 1000))
def test_spearman_matches_scipy(x: list[int], seed: int) -> None:
    y = np.random.default_rng(seed).integers(-3, 4, len(x))  # ties on both sides
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        with pytest.raises(PolyauditError, match="constant"):
            spearman(x, y)
        return
    assert spearman(x, y) == pytest.approx(sst.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_refuses_garbage() -> None:
    with pytest.raises(PolyauditError, match="NaN"):
        spearman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(PolyauditError, match="equal-length"):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0])


def test_spearman_with_ci_brackets_a_strong_trend() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(40.0)
    rho, lo, hi, p = spearman_with_ci(x, x + rng.normal(0, 3, 40), 300, rng)
    assert lo <= rho <= hi and lo > 0.8 and 0 < p < 0.01
    rho0, lo0, hi0, p0 = spearman_with_ci(x, rng.normal(0, 1, 40), 300, rng)
    assert lo0 <= rho0 <= hi0 and 0 < p0 <= 1
    with pytest.raises(PolyauditError, match="undefined"):  # most resamples of 3 points tie
        spearman_with_ci([0.0, 0.0, 1.0], [1.0, 2.0, 3.0], 200, rng)


@settings(max_examples=40)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=15), st.lists(st.integers(-5, 5), min_size=1, max_size=15))
def test_cliffs_delta_matches_brute_force(a: list[int], b: list[int]) -> None:
    brute = sum((x > y) - (x < y) for x in a for y in b) / (len(a) * len(b))
    assert cliffs_delta(a, b) == pytest.approx(brute, abs=1e-12)
    assert cliffs_delta(b, a) == pytest.approx(-brute, abs=1e-12)


def test_cliffs_delta_ci_and_garbage() -> None:
    rng = np.random.default_rng(1)
    d, lo, hi, p = cliffs_delta_with_ci(rng.normal(1, 1, 80), rng.normal(0, 1, 80), 300, rng)
    assert lo <= d <= hi and lo > 0 and 0 < p < 0.05
    assert cliffs_delta([3.0, 4.0], [1.0, 2.0]) == 1.0
    with pytest.raises(PolyauditError):
        cliffs_delta([], [1.0])
    with pytest.raises(PolyauditError, match="NaN"):
        cliffs_delta([np.nan], [1.0])


def test_huber_lines_match_scikit_learn() -> None:
    from sklearn.linear_model import HuberRegressor

    rng = np.random.default_rng(0)
    x = np.log(np.arange(5, 120.0))
    ys = 0.3 - 1.1 * x + 0.05 * rng.standard_normal((12, x.size))
    ys[:, ::13] += 2 * rng.standard_normal((12, x[::13].size))  # outliers
    slopes, icpts = huber_lines(x, ys)
    for y, s, c in zip(ys, slopes, icpts, strict=True):
        ref = HuberRegressor(alpha=0.0, max_iter=10_000, tol=1e-12).fit(x[:, None], y)
        assert s == pytest.approx(ref.coef_[0], abs=1e-4)
        assert c == pytest.approx(ref.intercept_, abs=1e-4)
    ls = np.polyfit(x, ys[0], 1)[0]
    assert abs(slopes[0] + 1.1) < abs(ls + 1.1)  # the outliers pull least squares, not Huber
    with pytest.raises(PolyauditError, match="distinct"):
        huber_lines(np.ones(5), np.ones((1, 5)))


# ---- bootstrap and permutation -------------------------------------------------------------


def test_bootstrap_ci_coverage_is_near_nominal() -> None:
    """Percentile CI of a normal mean (n=50) over R=200 datasets. Its coverage is 95% up to an
    O(1/n) undercoverage (about 94% here), so the count of hits is ~Binomial(200, 0.94); it falls
    outside the central 99.8% of that law with probability 0.002."""
    hits = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        x = rng.normal(3.0, 2.0, 50)
        idx = np.array(bootstrap_resamples(50, 400, rng))
        lo, hi = percentile_ci(x[idx].mean(axis=1))
        hits += lo <= 3.0 <= hi
    assert sst.binom.ppf(0.001, 200, 0.94) <= hits <= sst.binom.ppf(0.999, 200, 0.95)


def test_bootstrap_resamples_rows_and_groups() -> None:
    rows = bootstrap_resamples(30, 5, np.random.default_rng(0))
    assert len(rows) == 5 and all(r.shape == (30,) and r.min() >= 0 and r.max() < 30 for r in rows)
    again = bootstrap_resamples(30, 5, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(rows, again, strict=True))  # seeded, reproducible
    groups = np.repeat([7, 3, 9, 1, 5], [4, 2, 5, 3, 6])  # unequal groups, arbitrary labels
    sizes = {g: int(np.sum(groups == g)) for g in np.unique(groups)}
    for idx in bootstrap_resamples(20, 30, np.random.default_rng(1), groups=groups):
        drawn = groups[idx]
        labels, counts = np.unique(drawn, return_counts=True)
        assert all(c % sizes[g] == 0 for g, c in zip(labels, counts, strict=True))  # whole groups
        assert sum(c // sizes[g] for g, c in zip(labels, counts, strict=True)) == 5  # 5 groups drawn
    with pytest.raises(PolyauditError, match="2 groups"):
        bootstrap_resamples(4, 3, np.random.default_rng(0), groups=np.zeros(4))
    with pytest.raises(PolyauditError, match="shape"):
        bootstrap_resamples(4, 3, np.random.default_rng(0), groups=np.zeros(5))
    with pytest.raises(PolyauditError, match="at least 2 samples"):
        bootstrap_resamples(1, 3, np.random.default_rng(0))


def test_percentile_ci_tolerates_a_few_undefined_replicates() -> None:
    reps = np.r_[np.linspace(0, 1, 91), [np.nan] * 9]
    assert percentile_ci(reps, 0.9) == pytest.approx((0.05, 0.95))
    with pytest.raises(PolyauditError, match="undefined"):
        percentile_ci(np.r_[np.linspace(0, 1, 80), [np.nan] * 20])
    with pytest.raises(PolyauditError, match="level"):
        percentile_ci([1.0, 2.0], level=95)


def test_bootstrap_p_value_by_hand() -> None:
    assert bootstrap_p_value([1.0, 2.0, 3.0]) == pytest.approx(2 * 1 / 4)  # (0 + 1) / (3 + 1), doubled
    assert bootstrap_p_value(np.linspace(0.1, 1, 100)) == pytest.approx(2 / 101)
    assert bootstrap_p_value(np.linspace(-1, 1, 101)) == 1.0
    assert bootstrap_p_value([1.0, 2.0, np.nan], null=2.0) == 1.0
    with pytest.raises(PolyauditError):
        bootstrap_p_value([np.nan])


def test_permutation_p_value_by_hand() -> None:
    null = np.arange(1.0, 10.0)  # 1..9, mean 5
    assert permutation_p_value(9.5, null) == pytest.approx(1 / 10)  # never 0
    assert permutation_p_value(7.0, null, "greater") == pytest.approx(4 / 10)
    assert permutation_p_value(3.0, null, "less") == pytest.approx(4 / 10)
    assert permutation_p_value(8.0, null, "two-sided") == pytest.approx(5 / 10)  # |null - 5| >= 3
    with pytest.raises(PolyauditError, match="alternative"):
        permutation_p_value(1.0, null, "bigger")  # type: ignore[arg-type]
    with pytest.raises(PolyauditError):
        permutation_p_value(np.nan, null)


@settings(max_examples=30)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=50), st.floats(-10, 10))
def test_p_values_lie_in_the_unit_interval(reps: list[float], obs: float) -> None:
    assert 0 < bootstrap_p_value(reps, null=obs) <= 1
    for alt in ("greater", "less", "two-sided"):
        assert 0 < permutation_p_value(obs, reps, alt) <= 1
