"""stats' Spearman family: `spearman_or_nan` is `spearman` where defined and NaN exactly where not;
rank correlations are invariant under monotone transforms; the vectorised `spearman_rows` and the
permutation null agree with the scalar form; `snap_ties` only merges values closer than the
resolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyaudit.errors import PolyauditError
from polyaudit.stats import (
    snap_ties,
    spearman,
    spearman_or_nan,
    spearman_permutation_null,
    spearman_rows,
)

small_ints = st.lists(st.integers(-4, 4), min_size=0, max_size=25)


def _pair(x: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.random.default_rng(seed).integers(-3, 4, len(x))  # ties on both sides
    return np.asarray(x, dtype=float), y.astype(float)


@settings(max_examples=60)
@given(small_ints, st.integers(0, 1000))
def test_spearman_or_nan_is_spearman_where_defined_and_nan_exactly_where_not(x: list[int], seed: int) -> None:
    a, b = _pair(x, seed)
    got = spearman_or_nan(a, b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        assert np.isnan(got)
        return
    assert got == spearman(a, b)  # the same arithmetic, bit for bit
    assert -1.0 <= got <= 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_spearman_or_nan_is_nan_on_non_finite_input(bad: float) -> None:
    x, y = np.arange(5.0), np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    assert np.isfinite(spearman_or_nan(x, y))
    for a, b in ((np.where(x == 2, bad, x), y), (x, np.where(y == 4, bad, y))):
        assert np.isnan(spearman_or_nan(a, b))


def test_spearman_or_nan_still_refuses_vectors_of_different_lengths() -> None:
    with pytest.raises(PolyauditError, match="equal-length"):
        spearman_or_nan([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(PolyauditError, match="equal-length"):
        spearman_or_nan(np.ones((2, 3)), np.ones((2, 3)))


@settings(max_examples=60)
@given(st.lists(st.integers(-6, 6), min_size=2, max_size=25), st.integers(0, 1000))
def test_rank_correlation_is_invariant_under_monotone_transforms(x: list[int], seed: int) -> None:
    a, b = _pair(x, seed)
    rho = spearman_or_nan(a, b)
    transformed = spearman_or_nan(np.exp(a / 3.0) + 7.0, b**3 + 2.0 * b)  # strictly increasing maps
    flipped = spearman_or_nan(-a, b)
    if np.isnan(rho):
        assert np.isnan(transformed) and np.isnan(flipped)
        return
    assert transformed == rho  # identical ranks: identical arithmetic
    assert flipped == pytest.approx(-rho, abs=1e-12)
    assert spearman_or_nan(b, a) == pytest.approx(rho, abs=1e-12)  # symmetric


@settings(max_examples=40)
@given(st.integers(1, 12), st.integers(2, 20), st.integers(0, 1000))
def test_spearman_rows_agrees_with_the_scalar_form(n_rows: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, (n_rows, n)).astype(float)  # ties, and sometimes a constant row
    y = rng.standard_normal((n_rows, n))
    y[0] = y[0, 0]  # a constant row: undefined
    got = spearman_rows(x, y)
    want = np.array([spearman_or_nan(a, b) for a, b in zip(x, y, strict=True)])
    assert got.shape == (n_rows,)
    assert np.array_equal(np.isnan(got), np.isnan(want))  # NaN exactly where undefined
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=0, atol=1e-12)


def test_spearman_permutation_null_is_spearman_under_the_permutations() -> None:
    rng = np.random.default_rng(0)
    x, y = np.repeat([0.0, 0.2, 0.4, 0.6, 0.8], 3), rng.standard_normal(15)
    null = spearman_permutation_null(x, y, 500, rng)
    assert null.shape == (500,) and abs(null.mean()) < 0.05 and np.all(np.abs(null) <= 1 + 1e-12)
    perms = np.random.default_rng(5).permuted(np.tile(np.arange(x.size), (3, 1)), axis=1)
    got = spearman_permutation_null(x, y, 3, np.random.default_rng(5))
    for g, perm in zip(got, perms, strict=True):  # the same draws permute x's ranks as its values
        assert g == pytest.approx(spearman(x[perm], y), abs=1e-12)
    assert np.all(np.isnan(spearman_permutation_null(np.ones(6), y[:6], 4, rng)))  # constant: undefined


@settings(max_examples=60)
@given(st.lists(st.integers(-40, 40), min_size=1, max_size=30), st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]))
def test_snap_ties_merges_only_values_within_the_resolution(values: list[int], tol: float) -> None:
    v = np.asarray(values) / 4.0  # quarters: gaps and group means are exact, so the checks are too
    out = snap_ties(v, tol)
    order = np.argsort(v, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)  # the order is kept (ties may appear, never swaps)
    gaps = np.diff(v[order])
    merged = np.diff(out[order]) == 0
    assert np.all(merged[gaps <= tol])  # values chained by gaps <= tol become one tie ...
    assert not np.any(merged[gaps > tol])  # ... and groups further apart stay apart
    assert np.all((out >= v.min() - 1e-12) & (out <= v.max() + 1e-12))
    assert snap_ties(v, tol).tolist() == out.tolist()  # deterministic


def test_snap_ties_turns_rounding_noise_into_a_tie_for_spearman() -> None:
    alpha = np.array([-1.0, -1.0 + 1e-5, -2.0, -1.5])  # two layers with one alpha, up to storage noise
    action = np.array([1.0, 2.0, 0.5, 0.8])
    snapped = snap_ties(alpha, 1e-3)
    assert snapped[0] == snapped[1]
    assert spearman(action, snapped) != spearman(action, alpha)
