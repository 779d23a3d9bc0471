"""Statistics shared by the claims: bootstrap resamples and CIs, bootstrap and permutation p-values,
Spearman correlation, Cliff's delta, and multiple-comparison adjustment (Holm, Benjamini-Hochberg).

Pure numpy/scipy; every random draw comes from a `numpy.random.Generator` passed in. Garbage in
(NaN, constant input, a statistic undefined on most resamples) raises PolyauditError: a claim turns
it into an ERROR row, never into a number.

Spearman, in one place: `spearman` (raises where undefined), `spearman_or_nan` (NaN there: one
bootstrap replicate, one path), `spearman_rows` (rows of two matrices at once, vectorised),
`spearman_permutation_null` (one side permuted), `spearman_with_ci`; `snap_ties` makes values
closer than their resolution ties before ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy import stats as _st

from polyaudit.errors import PolyauditError

MAX_UNDEFINED = 0.1  # share of bootstrap replicates that may be undefined (NaN) before it is an error

Array = np.ndarray | Sequence[float]


def _vector(x: Array, what: str, min_size: int = 1) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1 or v.size < min_size:
        raise PolyauditError(f"{what} must be a 1-D array of {min_size}+ values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise PolyauditError(f"{what} contains NaN/inf")
    return v


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise PolyauditError(f"confidence level must be in (0, 1), got {level}")


# ---- bootstrap -------------------------------------------------------------------------------


def bootstrap_resamples(
    n: int, n_boot: int, rng: np.random.Generator, groups: np.ndarray | None = None
) -> list[np.ndarray]:
    """`n_boot` row-index resamples of n rows, with replacement. With `groups` (the resampling unit
    of each row, e.g. the sequence of a token) whole groups are drawn, as many as there are, and
    their rows concatenated (cluster bootstrap: a resample's length varies with the groups drawn)."""
    if n < 2:
        raise PolyauditError(f"a bootstrap needs at least 2 samples, got {n}")
    if n_boot < 1:
        raise PolyauditError(f"a bootstrap needs at least 1 replicate, got n_boot={n_boot}")
    if groups is None:
        return list(rng.integers(0, n, size=(n_boot, n)))
    g = np.asarray(groups)
    if g.shape != (n,):
        raise PolyauditError(f"groups must have shape ({n},), got {g.shape}")
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    sizes = np.bincount(inverse)
    if sizes.size < 2:
        raise PolyauditError("a cluster bootstrap needs at least 2 groups")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = []
    for pick in rng.integers(0, sizes.size, size=(n_boot, sizes.size)):
        # rows of the picked groups: for each pick, starts[g] .. starts[g] + sizes[g] - 1 in `order`
        lens = sizes[pick]
        offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        out.append(order[np.repeat(starts[pick], lens) + offsets])
    return out


def percentile_ci(replicates: Array, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates. NaN replicates (statistic undefined on that
    resample) are dropped; more than MAX_UNDEFINED of them is an error."""
    _check_level(level)
    r = np.asarray(replicates, dtype=np.float64).ravel()
    finite = r[np.isfinite(r)]
    if r.size == 0 or finite.size < (1.0 - MAX_UNDEFINED) * r.size:
        raise PolyauditError(f"{r.size - finite.size} of {r.size} bootstrap replicates are undefined")
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [a, 1.0 - a])
    return float(lo), float(hi)


Interval = Callable[[float], tuple[float, float]]  # confidence level -> (lo, hi)


def percentile_interval(replicates: Array, centre: float | None = None) -> Interval:
    """The percentile bootstrap CI at any level, from these replicates (re-centred so their mean is
    `centre` when given: removes the bootstrap's own bias). Undefined (NaN) replicates are dropped
    as in `percentile_ci`."""
    r = np.asarray(replicates, dtype=np.float64).ravel()
    if centre is not None:
        r = r - np.nanmean(r) + centre

    def at(level: float) -> tuple[float, float]:
        return percentile_ci(r, level)

    return at


def t_interval(estimate: float, se: float, df: float) -> Interval:
    """estimate +- t_{df, 1 - (1 - level) / 2} se at any level."""

    def at(level: float) -> tuple[float, float]:
        _check_level(level)
        half = float(_st.t.ppf(0.5 + level / 2.0, df)) * se
        return float(estimate - half), float(estimate + half)

    return at


def fisher_interval(r: float, n: int, n_controls: int = 0) -> Interval:
    """CI of a rank correlation of n pairs at any level, through Fisher's z with the Spearman
    variance correction (Fieller, Hartley & Pearson 1957: var z = 1.06 / (n - 3 - k) for k
    controlled variables); needs n - 3 - k >= 1."""
    dof = n - 3 - n_controls
    if dof < 1:
        raise PolyauditError(f"a Fisher-z interval needs at least {4 + n_controls} pairs, got {n}")
    z = float(np.arctanh(np.clip(r, -0.999999, 0.999999)))
    se = float(np.sqrt(1.06 / dof))

    def at(level: float) -> tuple[float, float]:
        _check_level(level)
        half = float(_st.norm.ppf(0.5 + level / 2.0)) * se
        return float(np.tanh(z - half)), float(np.tanh(z + half))

    return at


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) CI of a binomial proportion k / n."""
    _check_level(level)
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(_st.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(_st.beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


def bootstrap_p_value(replicates: Array, null: float = 0.0) -> float:
    """Two-sided bootstrap p-value for H0: statistic == null, with the +1 correction (never 0):
    p = min(1, 2 min((#{r <= null} + 1) / (B + 1), (#{r >= null} + 1) / (B + 1))), over the B finite
    replicates."""
    r = np.asarray(replicates, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise PolyauditError("no finite bootstrap replicates")
    b = r.size
    lower = (np.count_nonzero(r <= null) + 1) / (b + 1)
    upper = (np.count_nonzero(r >= null) + 1) / (b + 1)
    return float(min(1.0, 2.0 * min(lower, upper)))


# ---- correlation and effect sizes ------------------------------------------------------------


def spearman(x: Array, y: Array) -> float:
    """Spearman rank correlation (average ranks for ties). A constant input has no ranks to
    correlate: error, not NaN."""
    xa, ya = _vector(x, "spearman x", 2), _vector(y, "spearman y", 2)
    if xa.size != ya.size:
        raise PolyauditError(f"spearman needs two equal-length vectors, got {xa.size} and {ya.size}")
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        raise PolyauditError("spearman is undefined for a constant input")
    rx, ry = _st.rankdata(xa), _st.rankdata(ya)
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_or_nan(x: Array, y: Array) -> float:
    """`spearman`, or NaN where it is undefined: fewer than 2 pairs, a NaN/inf value, or a constant
    side (e.g. one bootstrap replicate, one path). Same arithmetic as `spearman` where defined.
    Vectors of different lengths are still an error."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != ya.shape:
        raise PolyauditError(f"spearman needs two equal-length vectors, got shapes {xa.shape} and {ya.shape}")
    if xa.size < 2 or not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        return float("nan")
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return float("nan")
    return spearman(xa, ya)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman of each row pair of x, y [B, n] at once (Pearson of average ranks, as `spearman`,
    vectorised: it may differ from `spearman` in the last bit); NaN for a row where either side is
    constant."""
    rx = _st.rankdata(x, axis=1)
    ry = _st.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(axis=1) / denom, np.nan)


def spearman_permutation_null(x: Array, y: Array, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """[n_perm] Spearman(x permuted, y) for `n_perm` random permutations of x: Pearson of average
    ranks (what Spearman is, ties included), all permutations in one matrix product. All NaN when
    either side is constant."""
    rx = _st.rankdata(x) - (len(x) + 1) / 2.0
    ry = _st.rankdata(y) - (len(y) + 1) / 2.0
    denom = np.sqrt((rx @ rx) * (ry @ ry))
    if denom == 0:
        return np.full(n_perm, np.nan)
    return rng.permuted(np.tile(rx, (n_perm, 1)), axis=1) @ ry / denom


def snap_ties(values: Array, tol: float) -> np.ndarray:
    """Values chained by gaps <= tol (in sorted order) replaced by their group's mean: values closer
    than their resolution become ties before ranking, not a ranking of rounding errors."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    group = np.concatenate([[0], np.cumsum(np.diff(v[order]) > tol)])
    means = np.bincount(group, weights=v[order]) / np.bincount(group)
    out = np.empty_like(v)
    out[order] = means[group]
    return out


def spearman_with_ci(
    x: Array, y: Array, n_boot: int, rng: np.random.Generator, level: float = 0.95,
) -> tuple[float, float, float, float]:
    """(rho, lo, hi, p): percentile CI from resampling (x, y) pairs; a resample with a constant side
    is undefined (NaN, at most MAX_UNDEFINED of them); p is the two-sided bootstrap p-value."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rho = spearman(xa, ya)
    reps = np.full(n_boot, np.nan)
    for b, idx in enumerate(bootstrap_resamples(xa.size, n_boot, rng)):
        xb, yb = xa[idx], ya[idx]
        if np.ptp(xb) > 0 and np.ptp(yb) > 0:
            reps[b] = np.corrcoef(_st.rankdata(xb), _st.rankdata(yb))[0, 1]
    lo, hi = percentile_ci(reps, level)
    return rho, lo, hi, bootstrap_p_value(reps)


def cliffs_delta(a: Array, b: Array) -> float:
    """Cliff's delta = P(A > B) - P(A < B) over all pairs, from sorted ranks in O((n + m) log m)."""
    xa, xb = _vector(a, "Cliff's delta sample a"), _vector(b, "Cliff's delta sample b")
    sb = np.sort(xb)
    less = np.searchsorted(sb, xa, side="left")  # b values below each a
    greater = xb.size - np.searchsorted(sb, xa, side="right")  # b values above each a
    return float((less.sum() - greater.sum()) / (xa.size * xb.size))


def cliffs_delta_with_ci(
    a: Array, b: Array, n_boot: int, rng: np.random.Generator, level: float = 0.95,
) -> tuple[float, float, float, float]:
    """(delta, lo, hi, p): each sample resampled independently; two-sided bootstrap p."""
    xa, xb = _vector(a, "Cliff's delta sample a"), _vector(b, "Cliff's delta sample b")
    delta = cliffs_delta(xa, xb)
    ia = rng.integers(0, xa.size, size=(n_boot, xa.size))
    ib = rng.integers(0, xb.size, size=(n_boot, xb.size))
    reps = np.array([cliffs_delta(xa[i], xb[j]) for i, j in zip(ia, ib, strict=True)])
    lo, hi = percentile_ci(reps, level)
    return delta, lo, hi, bootstrap_p_value(reps)


def permutation_p_value(
    observed: float, null_samples: Array,
    alternative: Literal["greater", "less", "two-sided"] = "greater",
) -> float:
    """p-value of `observed` against permutation-null samples, with the +1 correction (Phipson &
    Smyth 2010: (#as extreme + 1) / (K + 1), never 0). two-sided: as far from the null's mean."""
    if alternative not in ("greater", "less", "two-sided"):
        raise PolyauditError(f"unknown alternative {alternative!r}: use greater, less or two-sided")
    if not np.isfinite(observed):
        raise PolyauditError("the observed statistic is NaN/inf")
    null = np.asarray(null_samples, dtype=np.float64).ravel()
    null = null[np.isfinite(null)]
    if null.size == 0:
        raise PolyauditError("no finite permutation-null samples")
    if alternative == "greater":
        hits = np.count_nonzero(null >= observed)
    elif alternative == "less":
        hits = np.count_nonzero(null <= observed)
    else:
        centre = float(np.mean(null))
        hits = np.count_nonzero(np.abs(null - centre) >= abs(observed - centre))
    return float((hits + 1) / (null.size + 1))


# ---- robust regression ---------------------------------------------------------------------


def huber_lines(x: Array, ys: np.ndarray, epsilon: float = 1.35, max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(slopes, intercepts) of the rows of `ys` [B, m] on `x` [m]: the minimiser of scikit-learn's
    HuberRegressor objective (alpha=0; scale estimated jointly, Owen 2007), for many rows at once.
    Alternates an exact scale step with an IRLS step for the line; both decrease the convex
    objective. Used for bootstrap replicates of a power-law fit, where one scikit-learn fit each would
    cost more than the spectra."""
    ys = np.atleast_2d(np.asarray(ys, dtype=np.float64))
    xv = _vector(x, "huber x", 2)
    if ys.ndim != 2 or ys.shape[1] != xv.size or not np.all(np.isfinite(ys)):
        raise PolyauditError(f"huber_lines needs finite ys of shape [B, {xv.size}], got {ys.shape}")
    b, m = ys.shape
    xc = xv - xv.mean()
    sxx = float(xc @ xc)
    if sxx == 0:
        raise PolyauditError("a line needs at least two distinct x values")
    slope, icpt = (ys @ xc) / sxx, ys.mean(axis=1)
    ranks = np.arange(1, m + 1)
    for _ in range(max_iter):
        r = ys - icpt[:, None] - slope[:, None] * xc
        a = np.sort(np.abs(r), axis=1)
        # scale step: with the p smallest |r| inliers, sigma^2 = sum_in r^2 / (m - eps^2 (m - p));
        # the objective is convex in sigma, so exactly one p is self-consistent.
        denom = m - epsilon**2 * (m - ranks)
        with np.errstate(divide="ignore", invalid="ignore"):
            sig = np.sqrt(np.cumsum(a**2, axis=1) / np.where(denom > 0, denom, np.nan))
        nxt = np.concatenate([a[:, 1:], np.full((b, 1), np.inf)], axis=1)
        ok = (a <= epsilon * sig) & (nxt > epsilon * sig)
        sigma = np.where(ok.any(axis=1), sig[np.arange(b), ok.argmax(axis=1)], np.nan)
        sigma = np.maximum(np.nan_to_num(sigma, nan=np.sqrt(np.mean(r**2, axis=1))), 1e-12)
        # line step: weighted least squares with Huber weights at this scale
        w = np.minimum(1.0, epsilon * sigma[:, None] / np.maximum(np.abs(r), 1e-300))
        sw = w.sum(axis=1)
        mx = (w @ xc) / sw
        my = (w * ys).sum(axis=1) / sw
        dx = xc[None, :] - mx[:, None]
        new_slope = (w * dx * (ys - my[:, None])).sum(axis=1) / (w * dx**2).sum(axis=1)
        new_icpt = my - new_slope * mx
        done = np.allclose(new_slope, slope, rtol=0, atol=1e-11) and np.allclose(new_icpt, icpt, rtol=0, atol=1e-11)
        slope, icpt = new_slope, new_icpt
        if done:
            break
    return slope, icpt - slope * xv.mean()


# ---- multiple comparisons --------------------------------------------------------------------


def _pvalues(pvals: Array) -> np.ndarray:
    p = np.asarray(pvals, dtype=np.float64)
    if p.ndim != 1:
        raise PolyauditError(f"p-values must be a 1-D array, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):  # also catches NaN
        raise PolyauditError("p-values must lie in [0, 1] (NaN is not a p-value)")
    return p


def holm(pvals: Array) -> np.ndarray:
    """Holm step-down adjusted p-values: sorted p_(i) -> max_{j<=i} (m - j + 1) p_(j), capped at 1."""
    p = _pvalues(pvals)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    out = np.empty(m)
    out[order] = adj
    return out


def benjamini_hochberg(pvals: Array) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values: sorted p_(i) -> min_{j>=i} m p_(j) / j,
    capped at 1."""
    p = _pvalues(pvals)
    m = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adj
    return out


def adjust(pvals: Array, method: str = "holm") -> np.ndarray:
    """Adjusted p-values: method "holm" (family-wise error) or "bh" (false discovery rate)."""
    if method == "holm":
        return holm(pvals)
    if method in ("bh", "fdr_bh", "benjamini-hochberg"):
        return benjamini_hochberg(pvals)
    raise PolyauditError(f"unknown correction {method!r}: use holm or bh")
