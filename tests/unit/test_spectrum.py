"""Spectrum measures: planted power laws are recovered and covered, invariances hold, the fast
bootstrap matches the exact one, and garbage is refused with a reason."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from polyaudit.errors import PolyauditError
from polyaudit.measures.spectrum import (
    StreamingCovariance,
    alpha_with_ci,
    bootstrap_alphas,
    decompose,
    default_ranks,
    effective_dims,
    eigenspectrum,
    eigenspectrum_streaming,
    fit_power_law,
    paired_bootstrap_alphas,
    participation_ratio,
)
from polyaudit.stats import bootstrap_resamples, huber_lines


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """Small matrices: extra BLAS threads only contend (5x slower measured on a busy 2-core box)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def planted(n: int, d: int, alpha: float, seed: int) -> np.ndarray:
    """X = Z diag(sqrt(lambda)) Q^T: Gaussian rows whose covariance has eigenvalues k^alpha."""
    rng = np.random.default_rng(seed)
    lam = np.arange(1, d + 1, dtype=np.float64) ** alpha
    q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return (rng.standard_normal((n, d)) * np.sqrt(lam)) @ q.T


def exact_bootstrap(x: np.ndarray, ranks: tuple[int, int], resamples: list[np.ndarray]) -> np.ndarray:
    """Replicate alphas from each resample's full eigenspectrum (same estimator, no projection)."""
    lo, hi = ranks
    logs = np.log(np.array([eigenspectrum(x[i])[lo - 1 : hi] for i in resamples]))
    return huber_lines(np.log(np.arange(lo, hi + 1.0)), logs)[0]


# ---- planted power laws --------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(
    alpha=st.floats(-2.0, -0.8),
    d=st.integers(64, 256),
    n=st.integers(2000, 4000),
    seed=st.integers(0, 2**16),
)
def test_planted_exponent_is_recovered(alpha: float, d: int, n: int, seed: int) -> None:
    x = planted(n, d, alpha, seed)
    fit = fit_power_law(eigenspectrum(x))  # default ranks, sample size unknown (conservative)
    assert abs(fit.alpha - alpha) < 0.08
    assert fit.r2 > 0.9
    known_n = fit_power_law(eigenspectrum(x), n_samples=n)
    assert known_n.ranks == default_ranks(n, d)
    assert abs(known_n.alpha - alpha) < 0.08


def test_alpha_ci_covers_the_planted_exponent() -> None:
    """Coverage over 16 planted datasets. A 95% interval may miss; if it covers with probability
    >= 0.95, more than 4 misses out of 16 happen with probability < 0.001 (binomial)."""
    cases = [(alpha, d, n) for alpha in (-2.0, -1.4, -0.8) for d, n in ((64, 2000), (128, 3000), (256, 2000))]
    cases += [(-1.1, 192, 2500), (-1.7, 96, 4000), (-0.9, 160, 2000), (-1.25, 256, 4000), (-1.0, 224, 3000),
              (-1.5, 200, 2200), (-1.9, 144, 3500)]
    misses = 0
    for i, (alpha, d, n) in enumerate(cases[:16]):
        x = planted(n, d, alpha, 1000 + i)
        a, lo, hi = alpha_with_ci(x, n_boot=100, seed=i)
        assert lo <= a <= hi and abs(a - alpha) < 0.08
        misses += not lo <= alpha <= hi
    assert misses <= binom.ppf(0.999, 16, 0.05) == 4


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(1e-3, 1e3), shift=st.floats(-1e3, 1e3), seed=st.integers(0, 1000))
def test_alpha_is_invariant_to_scale_and_shift(scale: float, shift: float, seed: int) -> None:
    x = planted(600, 48, -1.2, seed)
    offset = shift * np.random.default_rng(seed).standard_normal(48)
    base = fit_power_law(eigenspectrum(x)).alpha
    assert fit_power_law(eigenspectrum(scale * x + offset)).alpha == pytest.approx(base, abs=1e-6)


def test_rotation_leaves_the_spectrum_unchanged() -> None:
    x = planted(500, 32, -1.0, 1)
    q = np.linalg.qr(np.random.default_rng(2).standard_normal((32, 32)))[0]
    np.testing.assert_allclose(eigenspectrum(x @ q), eigenspectrum(x), rtol=1e-9, atol=1e-15)


def test_spectrum_matches_numpy_and_gram_path() -> None:
    x = planted(300, 40, -1.0, 3)
    np.testing.assert_allclose(eigenspectrum(x), np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1], rtol=1e-9)
    wide = planted(40, 100, -1.0, 3)  # n < d: the 40 x 40 Gram matrix
    ev = eigenspectrum(wide)
    assert ev.shape == (100,) and ev.dtype == np.float64
    assert np.all(ev[39:] == 0) and np.all(ev[:39] > 0) and np.all(np.diff(ev) <= 0)
    ref = np.linalg.eigvalsh(np.cov(wide, rowvar=False))[::-1]
    np.testing.assert_allclose(ev[:39], ref[:39], rtol=1e-7)


def test_half_precision_input_is_computed_in_float64() -> None:
    x16 = planted(400, 24, -1.0, 4).astype(np.float16)
    np.testing.assert_allclose(eigenspectrum(x16), eigenspectrum(x16.astype(np.float64)), rtol=1e-12)


def test_flat_spectrum_has_alpha_zero() -> None:
    fit = fit_power_law(np.full(50, 2.0), ranks=(5, 40))
    assert fit.alpha == pytest.approx(0.0, abs=1e-9) and fit.r2 == 1.0
    assert (fit.ranks, fit.n_points) == ((5, 40), 36)


def test_exact_power_law_is_fitted_exactly() -> None:
    ranks = np.arange(1, 201.0)
    fit = fit_power_law(3.0 * ranks**-1.3, ranks=(10, 100))
    assert fit.alpha == pytest.approx(-1.3, abs=1e-6)
    assert fit.intercept == pytest.approx(np.log(3.0), abs=1e-5)
    assert fit.r2 == pytest.approx(1.0)


def test_participation_ratio() -> None:
    assert participation_ratio(np.ones(10)) == pytest.approx(10)
    assert participation_ratio([1.0, 0.0, 0.0]) == pytest.approx(1)
    assert participation_ratio([3.0, 1.0]) == pytest.approx(16 / 10)
    for bad in ([0.0, 0.0], [1.0, np.nan], [1.0, -1.0]):
        with pytest.raises(PolyauditError):
            participation_ratio(bad)


# ---- default range -------------------------------------------------------------------------


def test_default_ranks_follow_the_documented_rule() -> None:
    assert default_ranks(4096, 768) == (11, 267)  # 767... m=768: 768 / (2 (1 + sqrt(0.1875)))
    assert default_ranks(3000, 64) == (3, 27)
    for n, d in [(100, 64), (3000, 768), (4096, 3072), (1797, 128), (256, 2048), (10**6, 50)]:
        lo, hi = default_ranks(n, d)
        assert 2 <= lo <= 11 and hi - lo + 1 >= 5
        assert hi <= min(n - 1, d) // 2  # never past half of what the sample resolves
        assert default_ranks(2 * n, d)[1] >= hi  # more samples never shorten the range
    for n, d in [(12, 64), (1000, 10), (1, 5)]:
        with pytest.raises(PolyauditError, match="too few"):
            default_ranks(n, d)


# ---- degenerate input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (np.ones((100, 10)), "zero variance"),
        (np.full((100, 10), np.nan), "NaN"),
        (np.where(np.eye(50, 8) > 0, np.inf, 1.0), "NaN/inf"),
        (np.zeros((1, 5)), "at least 2 samples"),
        (np.zeros(5), "2-D"),
    ],
)
def test_degenerate_activations_are_refused(data: np.ndarray, reason: str) -> None:
    with pytest.raises(PolyauditError, match=reason):
        eigenspectrum(data)
    with pytest.raises(PolyauditError, match=reason):
        alpha_with_ci(data, n_boot=5)


def test_rank_deficient_data_gives_zeros_and_no_fit() -> None:
    rng = np.random.default_rng(0)
    low_rank = rng.standard_normal((500, 3)) @ rng.standard_normal((3, 64))  # rank 3
    ev = eigenspectrum(low_rank)
    assert effective_dims(ev) == 3  # rounding noise is zeroed, not fitted
    with pytest.raises(PolyauditError, match="too few"):
        fit_power_law(ev)
    with pytest.raises(PolyauditError, match="rank 3"):
        fit_power_law(ev, ranks=(2, 20))
    with pytest.raises(PolyauditError):
        alpha_with_ci(low_rank, n_boot=5)
    constant_cols = np.column_stack([rng.standard_normal((500, 4)), np.ones((500, 60))])
    with pytest.raises(PolyauditError, match="too few"):
        fit_power_law(eigenspectrum(constant_cols))


def test_rank_deficient_but_fittable_data_uses_its_rank() -> None:
    x = np.column_stack([planted(3000, 80, -1.0, 7), np.zeros((3000, 40))])  # 40 constant columns
    ev = eigenspectrum(x)
    assert effective_dims(ev) == 80
    fit = fit_power_law(ev, n_samples=3000)
    assert fit.ranks == default_ranks(3000, 80)
    assert abs(fit.alpha + 1.0) < 0.08
    up = planted(3000, 64, -1.0, 8) @ np.random.default_rng(8).standard_normal((64, 256))  # rank 64
    assert effective_dims(eigenspectrum(up.astype(np.float32))) == 64


@pytest.mark.parametrize(
    ("eigvals", "ranks", "reason"),
    [
        (np.zeros(30), None, "all eigenvalues are zero"),
        (np.r_[1.0, np.nan, np.ones(28)], None, "NaN"),
        (np.r_[np.arange(30.0, 1, -1), -5.0], (2, 20), "non-negative"),
        (np.arange(30.0, 0, -1), (2, 5), "fewer than 5"),
        (np.arange(30.0, 0, -1), (0, 10), "out of bounds"),
        (np.arange(30.0, 0, -1), (10, 31), "out of bounds"),
        (np.r_[np.arange(10.0, 0, -1), np.zeros(20)], (5, 20), "rank 10"),
        (np.ones((3, 3)), None, "1-D"),
    ],
)
def test_bad_spectra_are_refused(eigvals: np.ndarray, ranks: tuple[int, int] | None, reason: str) -> None:
    with pytest.raises(PolyauditError, match=reason):
        fit_power_law(eigvals, ranks)


# ---- streaming -----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 40), min_size=1, max_size=8), seed=st.integers(0, 1000))
def test_streaming_covariance_equals_numpy(cuts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((sum(cuts) + 3, 6)) * rng.uniform(0.1, 10, 6) + rng.uniform(-50, 50, 6)
    bounds = np.cumsum([0, *cuts, 3])
    chunks = [x[a:b] for a, b in pairwise(bounds)]
    acc = StreamingCovariance(6)
    for c in chunks:
        acc.update(c)
    assert acc.count == len(x)
    np.testing.assert_allclose(acc.mean, x.mean(axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(acc.covariance(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    half, rest = StreamingCovariance(6), StreamingCovariance(6)  # two workers, merged
    for i, c in enumerate(chunks):
        (half if i % 2 else rest).update(c)
    half.merge(rest)
    np.testing.assert_allclose(half.covariance(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(eigenspectrum_streaming(chunks), eigenspectrum(x), rtol=1e-8, atol=1e-10)


def test_streaming_refuses_bad_chunks() -> None:
    acc = StreamingCovariance(4)
    with pytest.raises(PolyauditError, match="shape"):
        acc.update(np.ones((3, 5)))
    with pytest.raises(PolyauditError, match="NaN"):
        acc.update(np.full((3, 4), np.nan))
    with pytest.raises(PolyauditError, match="at least 2"):
        acc.covariance()
    with pytest.raises(PolyauditError, match="merge"):
        acc.merge(StreamingCovariance(3))
    with pytest.raises(PolyauditError, match="no activations"):
        eigenspectrum_streaming([])
    with pytest.raises(PolyauditError, match="zero variance"):
        eigenspectrum_streaming([np.ones((5, 4))] * 2)


# ---- bootstrap -----------------------------------------------------------------------------


def test_projected_bootstrap_matches_exact_bootstrap() -> None:
    n, d = 1500, 200  # fit ranks 9-73: the bootstrap keeps 123 of 200 axes (projected path)
    x = planted(n, d, -1.0, 5)
    ranks = default_ranks(n, d)
    resamples = bootstrap_resamples(n, 12, np.random.default_rng(0))
    fast = bootstrap_alphas(x, ranks, resamples)
    exact = exact_bootstrap(x, ranks, resamples)
    spread = exact.std()
    # the approximation must be small next to the bootstrap spread it estimates
    assert np.max(np.abs(fast - exact)) < 0.5 * spread
    assert abs(np.mean(fast - exact)) < 0.2 * spread


def test_bootstrap_is_exact_when_all_axes_are_kept() -> None:
    x = planted(800, 40, -1.3, 6)
    ranks = default_ranks(800, 40)
    resamples = bootstrap_resamples(800, 6, np.random.default_rng(1))
    np.testing.assert_allclose(bootstrap_alphas(x, ranks, resamples), exact_bootstrap(x, ranks, resamples),
                               atol=1e-4)


def test_one_decomposition_serves_spectrum_and_bootstrap() -> None:
    x = planted(900, 120, -1.2, 10)
    eig, coords = decompose(x)
    np.testing.assert_allclose(eig, eigenspectrum(x), rtol=1e-9, atol=1e-15)
    assert coords.shape == (900, 120) and coords.dtype == np.float32
    np.testing.assert_allclose(coords.var(axis=0, ddof=1), eig, rtol=1e-4)  # principal coordinates
    resamples = bootstrap_resamples(900, 5, np.random.default_rng(4))
    ranks = default_ranks(900, 120)
    np.testing.assert_array_equal(bootstrap_alphas(x, ranks, resamples, decomposition=(eig, coords)),
                                  bootstrap_alphas(x, ranks, resamples))
    with pytest.raises(PolyauditError, match="decomposition"):
        bootstrap_alphas(x[:500], ranks, resamples, decomposition=(eig, coords))


def test_bootstrap_over_groups_and_its_errors() -> None:
    x = planted(1200, 48, -1.1, 8)
    groups = np.repeat(np.arange(60), 20)  # 60 "sequences" of 20 tokens
    resamples = bootstrap_resamples(1200, 20, np.random.default_rng(2), groups=groups)
    alphas = bootstrap_alphas(x, None, resamples)
    assert alphas.shape == (20,) and np.all(np.isfinite(alphas))
    assert np.all(np.abs(alphas + 1.1) < 0.15)
    with pytest.raises(PolyauditError, match="row indices"):
        bootstrap_alphas(x, None, [np.array([0, 5, 1200])])
    with pytest.raises(PolyauditError, match="rank"):
        bootstrap_alphas(x[:, :8], (2, 30), resamples)


def test_alpha_with_ci_intervals_and_determinism() -> None:
    x = planted(1500, 64, -1.0, 9)
    hull = alpha_with_ci(x, n_boot=80, seed=3)
    assert alpha_with_ci(x, n_boot=80, seed=3) == hull  # same seed, same numbers
    a, p_lo, p_hi = alpha_with_ci(x, n_boot=80, seed=3, interval="percentile")
    _, b_lo, b_hi = alpha_with_ci(x, n_boot=80, seed=3, interval="basic")
    assert a == hull[0]
    assert (b_lo, b_hi) == pytest.approx((2 * a - p_hi, 2 * a - p_lo))
    assert hull[1] <= min(p_lo, b_lo) + 1e-12 and hull[2] >= max(p_hi, b_hi) - 1e-12
    assert hull[0] - hull[1] == pytest.approx(hull[2] - hull[0])
    groups = np.repeat(np.arange(75), 20)
    g_alpha, g_lo, g_hi = alpha_with_ci(x, n_boot=80, seed=3, groups=groups)
    assert g_alpha == a and g_lo < a < g_hi
    with pytest.raises(PolyauditError, match="interval"):
        alpha_with_ci(x, n_boot=10, interval="bca")  # type: ignore[arg-type]


def test_paired_bootstrap_is_each_layers_bootstrap_on_the_same_resamples() -> None:
    layers = [planted(700, 40, a, 20 + i) for i, a in enumerate((-0.9, -1.2, -1.6))]
    ranks = default_ranks(700, 40)
    resamples = bootstrap_resamples(700, 30, np.random.default_rng(5), groups=np.repeat(np.arange(350), 2))
    paired = paired_bootstrap_alphas(layers, ranks, resamples)
    assert paired.shape == (3, 30)
    for row, x in zip(paired, layers, strict=True):
        np.testing.assert_allclose(row, bootstrap_alphas(x, ranks, resamples), atol=1e-9)
    parts = [decompose(x) for x in layers]
    np.testing.assert_array_equal(paired_bootstrap_alphas(layers, ranks, resamples, decompositions=parts), paired)


def test_fit_power_law_is_scikit_learns_huber_fit() -> None:
    from sklearn.linear_model import HuberRegressor

    ev = np.arange(1, 80.0) ** -1.1 * np.exp(0.05 * np.random.default_rng(3).standard_normal(79))
    ev[20] *= 1.5  # an outlier the Huber loss discounts (the spectrum is sorted first)
    fit = fit_power_law(ev, ranks=(5, 60))
    x, y = np.log(np.arange(5, 61.0)), np.log(np.sort(ev)[::-1][4:60])
    ref = HuberRegressor(epsilon=1.35, alpha=0.0, max_iter=10_000, tol=1e-12).fit((x - x.mean())[:, None], y - y.mean())
    assert fit.alpha == pytest.approx(float(ref.coef_[0]), abs=1e-6)
