"""Own alignment versus mismatch: does a unit's OWN boundary pattern go with its OWN semantic change?

C2 and C3 walk many polylines (paths between samples, rays of scalings, moves along a direction) on
a shared grid and record, on each step k of polyline i, the downstream boundaries crossed c_i[k] and
the semantic change s_i[k] (JS divergence between the outputs at the step's ends). A per-polyline
Spearman(c_i, s_i) is biased by the grid itself: step lengths, a path's midpoint, the distance from
a reference make crossings and semantic change co-vary on every polyline whether or not the
boundaries matter. Other polylines share that geometry but not polyline i's boundaries, so they
are the matched control:

    R[i, j]   = Spearman over the steps of (c_j, s_i)  (polyline i's change vs polyline j's crossings)
    own       = mean_i R[i, i]
    mismatch  = mean_{i != j} R[i, j]
    effect    = own - mismatch                          (predicted positive)

p: permutation test of which polyline's crossing pattern goes with which polyline's semantic
change (pairings drawn uniformly; the statistic of pairing pi is mean_i R[i, pi(i)] minus the
mean of the other entries, so the null is centred exactly on 0), two-sided, (hits + 1) / (K + 1).
Under "boundaries do not shape the change" the pairs (c_i, s_i) are exchangeable with mismatched
ones and the test is exact. CI: bootstrap over polylines (each replicate reweights rows and columns
of R by the polylines' multiplicities; copies of one polyline never count as a mismatch).

Only polylines whose crossings and semantic change both vary over the steps take part (either
constant leaves Spearman undefined); the selection depends on each side separately, so it keeps
the two independent under the null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from polyaudit.errors import PolyauditError
from polyaudit.stats import bootstrap_resamples, percentile_ci, permutation_p_value

N_PERM_MIN = 1999  # pairings are cheap (a gather of m entries); 1/2000, the smallest p, survives Holm


def varying(a: np.ndarray) -> np.ndarray:
    """bool [m]: rows of `a` [m, K] that are not constant."""
    return np.ptp(np.asarray(a, dtype=np.float64), axis=1) > 0


def _unit_ranks(a: np.ndarray) -> np.ndarray:
    """Rows of `a` [m, K] -> average ranks, centred and scaled to unit norm (rows must vary), so
    that Spearman(a_i, b_j) = ranks(a)[i] @ ranks(b)[j]."""
    r = _st.rankdata(np.asarray(a, dtype=np.float64), axis=1)
    r -= r.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(r, axis=1, keepdims=True)
    if np.any(norm == 0):
        raise PolyauditError("a constant row has no ranks to correlate")
    return r / norm


def alignment_matrix(crossings: np.ndarray, change: np.ndarray) -> np.ndarray:
    """R [m, m]: R[i, j] = Spearman(crossings[j], change[i]) over the K steps; every row of both
    [m, K] inputs must vary."""
    c, s = np.asarray(crossings, dtype=np.float64), np.asarray(change, dtype=np.float64)
    if c.shape != s.shape or c.ndim != 2 or c.shape[1] < 2:
        raise PolyauditError(f"crossings and change must both be [m, K >= 2], got {c.shape} and {s.shape}")
    return np.clip(_unit_ranks(s) @ _unit_ranks(c).T, -1.0, 1.0)


def contrast(r: np.ndarray) -> tuple[float, float, float]:
    """(effect, own, mismatch) of an alignment matrix."""
    m = r.shape[0]
    own = float(np.trace(r)) / m
    mismatch = (float(r.sum()) - float(np.trace(r))) / (m * (m - 1))
    return own - mismatch, own, mismatch


@dataclass(frozen=True)
class AlignmentTest:
    effect: float  # own - mismatch
    own: float
    mismatch: float
    ci: tuple[float, float]
    p: float  # two-sided permutation p
    boot: np.ndarray  # bootstrap replicates of the effect
    n: int  # polylines taking part
    n_perm: int


def alignment_test(crossings: np.ndarray, change: np.ndarray, *, n_boot: int, n_perm: int,
                   rng_boot: np.random.Generator, rng_perm: np.random.Generator,
                   level: float = 0.95) -> AlignmentTest:
    """Own-versus-mismatch alignment of m polylines (module docstring); rows must vary (see
    `varying`) and m >= 3."""
    r = alignment_matrix(crossings, change)
    m = r.shape[0]
    if m < 3:
        raise PolyauditError(f"own-versus-mismatch alignment needs at least 3 polylines, got {m}")
    effect, own, mismatch = contrast(r)
    total = float(r.sum())
    k = max(int(n_perm), N_PERM_MIN)
    pairings = rng_perm.permuted(np.tile(np.arange(m), (k, 1)), axis=1)
    matched = r[np.arange(m)[None, :], pairings].sum(axis=1)  # sum_i R[i, pi(i)]
    null = matched / m - (total - matched) / (m * (m - 1))
    p = permutation_p_value(effect, null, alternative="two-sided")
    # bootstrap over polylines: multiplicities w; own = sum w_i R_ii / m,
    # mismatch = sum_{i != j} w_i w_j R_ij / sum_{i != j} w_i w_j
    idx = np.stack(bootstrap_resamples(m, max(int(n_boot), 1), rng_boot))
    w = np.stack([np.bincount(row, minlength=m) for row in idx]).astype(np.float64)
    off = r - np.diag(np.diag(r))
    own_b = w @ np.diag(r) / m
    pairs = w.sum(axis=1) ** 2 - (w**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mis_b = np.einsum("bi,ij,bj->b", w, off, w) / pairs
    boot = np.where(pairs > 0, own_b - mis_b, np.nan)
    lo, hi = percentile_ci(boot, level)
    return AlignmentTest(float(effect), own, mismatch, (float(lo), float(hi)), float(p), boot, m, k)
