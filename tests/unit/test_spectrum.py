"""Spectrum measures: planted power laws are recovered, invariances hold, garbage is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyaudit.errors import PolyauditError
from polyaudit.measures.spectrum import (
    StreamingCovariance,
    alpha_with_ci,
    bootstrap_alphas,
    default_ranks,
    eigenspectrum,
    eigenspectrum_streaming,
    fit_power_law,
    huber_slopes,
    participation_ratio,
)


def planted(n: int, d: int, alpha: float, seed: int) -> np.ndarray:
    """Gaussian rows whose covariance has eigenvalues n^alpha, in a random basis."""
    rng = np.random.default_rng(seed)
    lam = np.arange(1, d + 1, dtype=float) ** alpha
    q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return (rng.standard_normal((n, d)) * np.sqrt(lam)) @ q.T


@settings(max_examples=6, deadline=None)
@given(alpha=st.floats(-2.0, -0.8), d=st.sampled_from([64, 128]), seed=st.integers(0, 10_000))
def test_planted_exponent_is_recovered_and_covered(alpha: float, d: int, seed: int) -> None:
    x = planted(3000, d, alpha, seed)
    fit = fit_power_law(eigenspectrum(x), default_ranks(3000, d))
    assert abs(fit.alpha - alpha) < 0.08
    a, lo, hi = alpha_with_ci(x, n_boot=40, seed=seed)
    assert a == pytest.approx(fit.alpha)
    assert lo <= alpha <= hi
    assert fit.r2 > 0.9


@settings(max_examples=6, deadline=None)
@given(scale=st.floats(1e-3, 1e3), shift=st.floats(-100, 100), seed=st.integers(0, 1000))
def test_alpha_invariant_to_scale_and_shift(scale: float, shift: float, seed: int) -> None:
    x = planted(800, 48, -1.2, seed)
    base = fit_power_law(eigenspectrum(x)).alpha
    moved = fit_power_law(eigenspectrum(x * scale + shift)).alpha
    assert moved == pytest.approx(base, abs=1e-4)  # Huber (L-BFGS) converges to ~1e-6


def test_rotation_leaves_the_spectrum_unchanged() -> None:
    x = planted(500, 32, -1.0, 1)
    q = np.linalg.qr(np.random.default_rng(2).standard_normal((32, 32)))[0]
    np.testing.assert_allclose(eigenspectrum(x @ q), eigenspectrum(x), rtol=1e-9, atol=1e-12)


def test_gram_path_matches_covariance_path() -> None:
    x = planted(40, 100, -1.0, 3)
    ev = eigenspectrum(x)
    assert ev.shape == (100,) and np.all(ev[39:] == 0)
    ref = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    np.testing.assert_allclose(ev[:39], ref[:39], rtol=1e-7)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (np.ones((100, 10)), "zero variance"),
        (np.full((100, 10), np.nan), "NaN"),
        (np.zeros((1, 5)), "at least 2"),
    ],
)
def test_degenerate_input_is_refused(data: np.ndarray, reason: str) -> None:
    with pytest.raises(PolyauditError, match=reason):
        fit_power_law(eigenspectrum(data))


def test_rank_deficient_data_is_refused_not_fitted() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3)) @ rng.standard_normal((3, 64))  # rank 3
    with pytest.raises(PolyauditError):
        fit_power_law(eigenspectrum(x), ranks=(2, 20))
    with pytest.raises(PolyauditError):
        alpha_with_ci(x, ranks=(2, 20), n_boot=10)


def test_default_ranks_stay_inside_what_the_sample_resolves() -> None:
    for n, d in [(100, 64), (3000, 768), (3000, 3072), (1797, 128)]:
        lo, hi = default_ranks(n, d)
        assert 2 <= lo < hi <= min(n - 1, d) // 2
    with pytest.raises(PolyauditError):
        default_ranks(12, 64)


@settings(max_examples=10, deadline=None)
@given(cuts=st.lists(st.integers(1, 60), min_size=1, max_size=6), seed=st.integers(0, 100))
def test_streaming_covariance_equals_numpy(cuts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((sum(cuts) + 2, 7)) * 3 + 5
    acc = StreamingCovariance(7)
    start = 0
    for c in [*cuts, 2]:
        acc.update(x[start:start + c])
        start += c
    np.testing.assert_allclose(acc.covariance(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    chunks = np.array_split(x, 3)
    np.testing.assert_allclose(eigenspectrum_streaming(chunks), eigenspectrum(x), rtol=1e-8, atol=1e-12)


def test_projected_bootstrap_matches_exact_bootstrap() -> None:
    x = planted(1500, 200, -1.1, 5)
    ranks = default_ranks(1500, 200)
    rng = np.random.default_rng(0)
    resamples = [rng.integers(0, 1500, 1500) for _ in range(10)]
    fast = bootstrap_alphas(x, ranks, resamples)
    point = fit_power_law(eigenspectrum(x), ranks).alpha
    lo, hi = ranks
    grid = np.log(np.arange(lo, hi + 1.0))
    ref = huber_slopes(grid, np.log(eigenspectrum(x)[lo - 1:hi])[None])[0]
    exact = np.array([point + huber_slopes(grid, np.log(eigenspectrum(x[i])[lo - 1:hi])[None])[0] - ref
                      for i in resamples])
    np.testing.assert_allclose(fast, exact, atol=0.01)


def test_huber_slopes_agree_with_least_squares_without_outliers() -> None:
    x = np.log(np.arange(5, 60.0))
    y = 2.0 - 1.3 * x + np.random.default_rng(0).normal(0, 0.01, x.size)
    assert huber_slopes(x, y[None])[0] == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-3)


def test_participation_ratio() -> None:
    assert participation_ratio(np.ones(10)) == pytest.approx(10)
    assert participation_ratio([1.0, 0.0, 0.0]) == pytest.approx(1)
