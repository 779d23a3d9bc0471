"""Eigenspectra of activations and their power-law exponent.

Marshall & Kirchner 2024, "Understanding polysemanticity in neural networks through coding theory"
(arXiv 2401.17975): the eigenvalues of a layer's activation covariance decay as a power law,
lambda_n ~ n^alpha, with alpha negative (they mark alpha = -1, the critical exponent of Stringer et
al. 2019 for smooth, high-dimensional codes). alpha is estimated by a robust (Huber) regression of
log lambda_n on log n over a rank range that avoids the head (a few dominant directions) and the
noise tail (ranks a finite sample cannot resolve), see `default_ranks`.

Bootstrap CIs resample rows (or whole groups of rows, e.g. the tokens of one sequence). To keep a
bootstrap replicate cheap, rows are projected once onto the top-k principal axes of the full data
(k = 2 x the top of the fit range, at most min(n, d)); each replicate's eigenvalues are those of the
k x k covariance of its resampled projected rows. By Cauchy interlacing these are lower bounds of the
replicate's own top-k eigenvalues, and the shortfall concentrates near rank k, well past the fit
range; `tests/unit/test_spectrum.py` checks the projected bootstrap against the exact one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from polyaudit.errors import PolyauditError

MIN_POINTS = 5  # ranks needed in the fit range
MAX_FIT_RANK = 128  # top of the default fit range; see default_ranks
HUBER_EPSILON = 1.35  # scikit-learn's default: 95% efficiency under Gaussian noise


@dataclass(frozen=True)
class PowerLawFit:
    alpha: float  # slope of log lambda on log rank (negative for a decaying spectrum)
    intercept: float  # natural-log intercept: log lambda_n ~ intercept + alpha * log n
    r2: float  # coefficient of determination of the fit on the range
    ranks: tuple[int, int]  # 1-based inclusive rank range
    n_points: int


def _as_float64(acts: np.ndarray) -> np.ndarray:
    x = np.asarray(acts)
    if x.ndim != 2:
        raise PolyauditError(f"activations must be a 2-D array [n, d], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise PolyauditError("activations contain NaN/inf", shape=x.shape)
    return x.astype(np.float64, copy=False)


def _numerical_zeros(ev: np.ndarray, size: int) -> np.ndarray:
    """Clip negatives, and set eigenvalues below the round-off floor of the eigensolver
    (lambda_max * size * eps, times 10) to exactly zero, so rank-deficient data reads as such."""
    ev = np.clip(ev, 0.0, None)
    if ev.size and ev.max() > 0:
        ev[ev < ev.max() * size * np.finfo(np.float64).eps * 10] = 0.0
    return ev


def eigenspectrum(acts: np.ndarray) -> np.ndarray:
    """Eigenvalues of the mean-centred covariance of `acts` [n, d], descending, length d (zeros past
    rank n-1). Uses the n x n Gram matrix when n - 1 < d."""
    x = _as_float64(acts)
    n, d = x.shape
    if n < 2:
        raise PolyauditError(f"an eigenspectrum needs at least 2 samples, got {n}")
    xc = x - x.mean(axis=0)
    if n - 1 < d:
        ev = np.linalg.eigvalsh(xc @ xc.T / (n - 1))
    else:
        ev = np.linalg.eigvalsh(xc.T @ xc / (n - 1))
    ev = _numerical_zeros(ev[::-1], max(n, d))
    if ev[0] <= 0:
        raise PolyauditError("activations have zero variance (constant data)", shape=x.shape)
    out = np.zeros(d)
    out[: min(d, ev.size)] = ev[:d]
    return out


class StreamingCovariance:
    """Covariance of rows seen chunk by chunk (Chan et al. pairwise update), O(d^2) memory."""

    def __init__(self, d: int) -> None:
        self.d = d
        self.count = 0
        self.mean = np.zeros(d)
        self._m2 = np.zeros((d, d))

    def update(self, x: np.ndarray) -> None:
        xb = _as_float64(x)
        if xb.shape[1] != self.d:
            raise PolyauditError(f"chunk has {xb.shape[1]} columns, expected {self.d}")
        nb = xb.shape[0]
        if nb == 0:
            return
        mb = xb.mean(axis=0)
        xc = xb - mb
        m2b = xc.T @ xc
        self._merge(nb, mb, m2b)

    def merge(self, other: StreamingCovariance) -> None:
        self._merge(other.count, other.mean, other._m2)

    def _merge(self, nb: int, mb: np.ndarray, m2b: np.ndarray) -> None:
        if nb == 0:
            return
        na = self.count
        n = na + nb
        delta = mb - self.mean
        self._m2 += m2b + np.outer(delta, delta) * (na * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.count = n

    def covariance(self) -> np.ndarray:
        if self.count < 2:
            raise PolyauditError(f"a covariance needs at least 2 samples, got {self.count}")
        return self._m2 / (self.count - 1)


def eigenspectrum_streaming(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """eigenspectrum of the concatenated chunks, in O(d^2) memory."""
    acc: StreamingCovariance | None = None
    for chunk in chunks:
        if acc is None:
            acc = StreamingCovariance(np.asarray(chunk).shape[1])
        acc.update(chunk)
    if acc is None:
        raise PolyauditError("no activations to compute a spectrum from")
    ev = _numerical_zeros(np.linalg.eigvalsh(acc.covariance())[::-1], max(acc.count, acc.d))
    if ev[0] <= 0:
        raise PolyauditError("activations have zero variance (constant data)")
    return ev


def effective_dims(eigvals: np.ndarray) -> int:
    """Numerical rank of a spectrum from `eigenspectrum` (its non-zero eigenvalues). Pass it to
    `default_ranks` as the dimension: an up-projection's pre-activations (d_mlp wide) live in a
    subspace of dimension d_model, and the ranks past it are exact zeros, not a tail."""
    return int(np.count_nonzero(np.asarray(eigvals) > 0))


def default_ranks(n_samples: int, n_dims: int) -> tuple[int, int]:
    """The default fit range [lo, hi] (1-based, inclusive).

    Top (noise tail): n samples resolve at most min(n - 1, d) eigenvalues, and sampling noise
    spreads an eigenvalue by a factor up to (1 + sqrt(d/n))^2 (Marchenko-Pastur); we keep the top
    half of the resolvable ranks shrunk by the edge factor 1 + sqrt(d/n), i.e.
    hi = min(n-1, d) / (2 (1 + sqrt(d/n))), and at most MAX_FIT_RANK = 128 (a decade and more of
    ranks fixes a slope; higher ranks add little and cost O(k^3) per bootstrap replicate).
    Bottom (head): the first ranks are a few dominant directions (mean offsets, outlier features)
    that sit above any power law; we skip about the first eighth of the range, between 2 and 11
    (Stringer et al. 2019 fit from rank 11).
    """
    if n_samples < 2 or n_dims < 1:
        raise PolyauditError(f"too few samples ({n_samples}) or dimensions ({n_dims}) for a spectrum")
    m = min(n_samples - 1, n_dims)
    hi = int(m / (2.0 * (1.0 + math.sqrt(n_dims / n_samples))))
    hi = min(hi, MAX_FIT_RANK)
    lo = min(11, max(2, hi // 8))
    if hi - lo + 1 < MIN_POINTS:
        raise PolyauditError(
            f"{n_samples} samples of {n_dims} dimensions resolve too few eigenvalues for a power-law "
            f"fit (ranks {lo}-{hi}); use more samples (a larger probe or --profile default)"
        )
    return lo, hi


def _check_range(eigvals: np.ndarray, ranks: tuple[int, int]) -> tuple[int, int]:
    lo, hi = int(ranks[0]), int(ranks[1])
    if lo < 1 or hi > eigvals.size or hi - lo + 1 < MIN_POINTS:
        raise PolyauditError(f"rank range {lo}-{hi} is invalid for {eigvals.size} eigenvalues (need {MIN_POINTS}+ ranks)")
    seg = eigvals[lo - 1 : hi]
    if np.any(seg <= 0):
        first = lo + int(np.argmax(seg <= 0))
        raise PolyauditError(f"eigenvalue at rank {first} is zero: the activations are rank-deficient for ranks {lo}-{hi}")
    return lo, hi


def fit_power_law(eigvals: np.ndarray | Sequence[float], ranks: tuple[int, int] | None = None) -> PowerLawFit:
    """Huber regression (scikit-learn) of log lambda on log rank over `ranks` (default_ranks of the
    number of positive eigenvalues and the length when None)."""
    from sklearn.linear_model import HuberRegressor

    ev = np.asarray(eigvals, dtype=np.float64)
    if ev.ndim != 1 or not np.all(np.isfinite(ev)):
        raise PolyauditError("eigenvalues must be a finite 1-D array")
    if np.all(ev <= 0):
        raise PolyauditError("all eigenvalues are zero (constant data)")
    if ranks is None:
        n_pos = int(np.count_nonzero(ev > 0))
        ranks = default_ranks(n_pos + 1, ev.size)
    lo, hi = _check_range(ev, ranks)
    x = np.log(np.arange(lo, hi + 1, dtype=np.float64))
    y = np.log(ev[lo - 1 : hi])
    model = HuberRegressor(epsilon=HUBER_EPSILON, alpha=0.0, max_iter=1000).fit(x[:, None], y)
    alpha, intercept = float(model.coef_[0]), float(model.intercept_)
    resid = y - (intercept + alpha * x)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(alpha=alpha, intercept=intercept, r2=r2, ranks=(lo, hi), n_points=hi - lo + 1)


def huber_slopes(x: np.ndarray, ys: np.ndarray, epsilon: float = HUBER_EPSILON, iters: int = 50) -> np.ndarray:
    """Huber M-estimates of the slope of each row of `ys` [B, m] on `x` [m], vectorised (IRLS with a
    MAD scale). Used for bootstrap replicates, where one scikit-learn fit per replicate is too slow;
    replicate deviations are measured with this estimator on both sides (see bootstrap_alphas)."""
    ys = np.atleast_2d(ys)
    xm = np.broadcast_to(x, ys.shape)
    w = np.ones_like(ys)
    slope = np.zeros(ys.shape[0])
    for _ in range(iters):
        sw = w.sum(axis=1, keepdims=True)
        mx = (w * xm).sum(axis=1, keepdims=True) / sw
        my = (w * ys).sum(axis=1, keepdims=True) / sw
        sxx = (w * (xm - mx) ** 2).sum(axis=1)
        new = (w * (xm - mx) * (ys - my)).sum(axis=1) / np.where(sxx > 0, sxx, np.nan)
        intercept = my[:, 0] - new * mx[:, 0]
        r = ys - (intercept[:, None] + new[:, None] * xm)
        scale = 1.4826 * np.median(np.abs(r - np.median(r, axis=1, keepdims=True)), axis=1, keepdims=True)
        scale = np.where(scale > 0, scale, 1e-12)
        u = np.abs(r) / (epsilon * scale)
        w = np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12))
        if np.allclose(new, slope, rtol=0, atol=1e-10, equal_nan=True):
            slope = new
            break
        slope = new
    return slope


def _projected(acts: np.ndarray, k: int) -> np.ndarray:
    """Rows of `acts`, centred, projected onto the top-k principal axes of the full data."""
    x = _as_float64(acts)
    xc = x - x.mean(axis=0)
    n, d = xc.shape
    if k >= min(n, d):
        return xc
    if n - 1 < d:
        ev, u = np.linalg.eigh(xc @ xc.T)
        top = u[:, ::-1][:, :k]
        return top * np.sqrt(np.clip(ev[::-1][:k], 0.0, None))  # = xc @ V_k up to sign
    _ev, v = np.linalg.eigh(xc.T @ xc)
    return xc @ v[:, ::-1][:, :k]


def _replicate_spectra(y: np.ndarray, resamples: Sequence[np.ndarray], hi: int) -> np.ndarray:
    """Top-hi eigenvalues of the covariance of each resample of the projected rows `y`."""
    out = np.empty((len(resamples), hi))
    for b, idx in enumerate(resamples):
        yb = y[idx]
        yb = yb - yb.mean(axis=0)
        m = yb.shape[0]
        if m - 1 < yb.shape[1]:
            ev = np.linalg.eigvalsh(yb @ yb.T / (m - 1))
        else:
            ev = np.linalg.eigvalsh(yb.T @ yb / (m - 1))
        ev = ev[::-1]
        top = np.zeros(hi)
        top[: min(hi, ev.size)] = ev[:hi]
        out[b] = top
    return out


def bootstrap_alphas(acts: np.ndarray, ranks: tuple[int, int], resamples: Sequence[np.ndarray]) -> np.ndarray:
    """alpha of each row-index resample, on the scale of `fit_power_law(eigenspectrum(acts), ranks)`:
    replicate alpha = alpha_hat + (huber_slope(replicate) - huber_slope(full data)), so the
    vectorised estimator used for speed only measures deviations. A replicate whose spectrum is zero
    in the range gives NaN."""
    lo, hi = int(ranks[0]), int(ranks[1])
    full = eigenspectrum(acts)
    lo, hi = _check_range(full, (lo, hi))
    point = fit_power_law(full, (lo, hi)).alpha
    k = max(2 * hi, hi + 32)
    y = _projected(acts, k)
    spectra = _replicate_spectra(y, resamples, hi)
    x = np.log(np.arange(lo, hi + 1, dtype=np.float64))
    seg = spectra[:, lo - 1 : hi]
    ok = np.all(seg > 0, axis=1)
    logs = np.log(np.where(seg > 0, seg, 1.0))
    slopes = huber_slopes(x, logs)
    ref = float(huber_slopes(x, np.log(full[lo - 1 : hi])[None, :])[0])
    alphas = point + (slopes - ref)
    alphas[~ok] = np.nan
    return alphas


def alpha_with_ci(
    acts: np.ndarray,
    ranks: tuple[int, int] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    *,
    groups: np.ndarray | None = None,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(alpha, lo, hi): alpha of the full data and a bootstrap CI over rows (or over `groups`).

    Sample eigenvalues are biased (resampling rows spreads them further, as fewer distinct rows
    do), so the bootstrap distribution sits off the estimate. The interval is the hull of the
    percentile interval and the basic (reverse-percentile) interval: the first assumes the
    replicates are centred on the truth, the second that their offset mirrors the estimate's own
    bias; the hull holds under either, at the price of width."""
    from polyaudit.stats import bootstrap_resamples, percentile_ci

    x = _as_float64(acts)
    n = x.shape[0]
    eig = eigenspectrum(x)
    fit_ranks = ranks or default_ranks(n, effective_dims(eig))
    fit = fit_power_law(eig, fit_ranks)
    rng = np.random.default_rng(seed)
    reps = bootstrap_alphas(x, fit.ranks, bootstrap_resamples(n, n_boot, rng, groups=groups))
    q_lo, q_hi = percentile_ci(reps, level)
    lo, hi = min(q_lo, 2 * fit.alpha - q_hi), max(q_hi, 2 * fit.alpha - q_lo)
    return fit.alpha, lo, hi


def participation_ratio(eigvals: np.ndarray | Sequence[float]) -> float:
    """(sum lambda)^2 / sum lambda^2: the effective number of dimensions."""
    ev = np.asarray(eigvals, dtype=np.float64)
    if not np.all(np.isfinite(ev)) or np.sum(ev**2) <= 0:
        raise PolyauditError("participation ratio needs finite, not-all-zero eigenvalues")
    return float(ev.sum() ** 2 / np.sum(ev**2))
