"""Statistics shared by the claims: bootstrap resamples and CIs, bootstrap and permutation p-values,
Spearman correlation, Cliff's delta, and multiple-comparison adjustment (Holm, Benjamini-Hochberg).
Pure numpy/scipy; every random draw comes from a Generator passed in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats as _st

from polyaudit.errors import PolyauditError


def bootstrap_resamples(
    n: int, n_boot: int, rng: np.random.Generator, groups: np.ndarray | None = None
) -> list[np.ndarray]:
    """Row-index resamples with replacement. With `groups` (the resampling unit of each row, e.g.
    the sequence of a token) whole groups are resampled (cluster bootstrap)."""
    if n < 2:
        raise PolyauditError(f"a bootstrap needs at least 2 samples, got {n}")
    if groups is None:
        return [rng.integers(0, n, n) for _ in range(n_boot)]
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise PolyauditError(f"groups must have shape ({n},), got {groups.shape}")
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    if len(members) < 2:
        raise PolyauditError("a cluster bootstrap needs at least 2 groups")
    out = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        out.append(np.concatenate([members[g] for g in pick]))
    return out


def percentile_ci(replicates: np.ndarray | Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; NaN replicates are dropped, but more than 10%
    NaN means the statistic is not defined on too many resamples (error)."""
    r = np.asarray(replicates, dtype=float)
    finite = r[np.isfinite(r)]
    if r.size == 0 or finite.size < 0.9 * r.size:
        raise PolyauditError(f"{r.size - finite.size} of {r.size} bootstrap replicates are undefined")
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap_p_value(replicates: np.ndarray | Sequence[float], null: float = 0.0) -> float:
    """Two-sided bootstrap p-value for H0: statistic == null, with the +1 correction."""
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise PolyauditError("no finite bootstrap replicates")
    b = r.size
    lower = (np.count_nonzero(r <= null) + 1) / (b + 1)
    upper = (np.count_nonzero(r >= null) + 1) / (b + 1)
    return float(min(1.0, 2.0 * min(lower, upper)))


def spearman(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> float:
    """Spearman rank correlation; a constant input has no ranks to correlate (error)."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1 or xa.size < 2:
        raise PolyauditError(f"spearman needs two equal-length vectors of 2+ values, got {xa.shape} and {ya.shape}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise PolyauditError("spearman input contains NaN/inf")
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        raise PolyauditError("spearman is undefined for a constant input")
    rx, ry = _st.rankdata(xa), _st.rankdata(ya)
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_with_ci(
    x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], n_boot: int,
    rng: np.random.Generator, level: float = 0.95,
) -> tuple[float, float, float, float]:
    """(rho, lo, hi, p): bootstrap over (x, y) pairs; p is the two-sided bootstrap p-value."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = spearman(xa, ya)
    reps = np.full(n_boot, np.nan)
    for b, idx in enumerate(bootstrap_resamples(xa.size, n_boot, rng)):
        if np.ptp(xa[idx]) > 0 and np.ptp(ya[idx]) > 0:
            reps[b] = spearman(xa[idx], ya[idx])
    lo, hi = percentile_ci(reps, level)
    return rho, lo, hi, bootstrap_p_value(reps)


def holm(pvals: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(pvals, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def benjamini_hochberg(pvals: np.ndarray | Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(pvals, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def adjust(pvals: np.ndarray | Sequence[float], method: str = "holm") -> np.ndarray:
    if method == "holm":
        return holm(pvals)
    if method in ("bh", "fdr_bh", "benjamini-hochberg"):
        return benjamini_hochberg(pvals)
    raise PolyauditError(f"unknown correction {method!r}: use holm or bh")


def cliffs_delta(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """Cliff's delta = P(A > B) - P(A < B), computed from ranks in O((n + m) log(n + m))."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size == 0 or xb.size == 0:
        raise PolyauditError("Cliff's delta needs two non-empty samples")
    sb = np.sort(xb)
    less = np.searchsorted(sb, xa, side="left")  # b values < each a
    less_eq = np.searchsorted(sb, xa, side="right")  # b values <= each a
    greater = xb.size - less_eq
    return float((less.sum() - greater.sum()) / (xa.size * xb.size))


def cliffs_delta_with_ci(
    a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], n_boot: int,
    rng: np.random.Generator, level: float = 0.95,
) -> tuple[float, float, float, float]:
    """(delta, lo, hi, p): each sample resampled independently; two-sided bootstrap p."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    delta = cliffs_delta(xa, xb)
    reps = np.array([
        cliffs_delta(xa[rng.integers(0, xa.size, xa.size)], xb[rng.integers(0, xb.size, xb.size)])
        for _ in range(n_boot)
    ])
    lo, hi = percentile_ci(reps, level)
    return delta, lo, hi, bootstrap_p_value(reps)


def permutation_p_value(
    observed: float, null_samples: np.ndarray | Sequence[float],
    alternative: Literal["greater", "less", "two-sided"] = "greater",
) -> float:
    """p-value of `observed` against permutation-null samples, with the +1 correction."""
    null = np.asarray(null_samples, dtype=float)
    null = null[np.isfinite(null)]
    if null.size == 0:
        raise PolyauditError("no finite permutation-null samples")
    k = null.size
    if alternative == "greater":
        return float((np.count_nonzero(null >= observed) + 1) / (k + 1))
    if alternative == "less":
        return float((np.count_nonzero(null <= observed) + 1) / (k + 1))
    centre = float(np.mean(null))
    dev = abs(observed - centre)
    return float((np.count_nonzero(np.abs(null - centre) >= dev) + 1) / (k + 1))
