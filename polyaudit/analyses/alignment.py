"""Boundaries against the frozen-code control: does the output change where a polyline crosses
boundaries BECAUSE of those boundaries?

C2 and C3 walk many polylines (paths between samples, rays of scalings, moves along a direction)
and record, on each step k of polyline i, the downstream boundaries crossed c_i[k] (or their number
per unit length), the semantic change s_i[k] (JS divergence between the outputs at the step's
ends) and the same change with every downstream unit kept in the state it has at an anchor
(s0_i[k]; the frozen-code control of `polyaudit.analyses.polylines`: the network with the
polyline's boundaries removed). Crossings and change co-vary on every polyline for reasons of
geometry alone: step lengths, a path's midpoint, the distance from a reference, a direction along
which both the output and some boundaries vary. The control shares all of that geometry but not
the boundaries:

    own_i     = Spearman over the steps of (c_i, s_i)
    frozen_i  = Spearman over the steps of (c_i, s0_i)     (averaged over the anchors)
    d_i       = own_i - frozen_i                           (predicted positive)
    effect    = mean_i d_i                                 (Spearman rho)

Boundaries that cannot change the output leave every output as the anchor's polytope gives it,
so s0_i = s_i and d_i = 0 exactly, whatever the geometry. Polylines whose crossings are constant
over the steps are left out (no ranks to correlate); a constant change side has no ranks either
and counts as no association (0).
CI: bootstrap over polylines, the unit of replication: the EXPANDED percentile interval
(Hesterberg 2015: the percentile interval at the level whose normal quantile is
sqrt(m / (m - 1)) t_{m-1} of the nominal one, which corrects the plain percentile interval's
narrowness for a mean of m units; beyond the replicates' resolution, at the simultaneous levels of
many rows, a normal tail); `interval` gives it at any level. p: the two-sided bootstrap
p-value of the same replicates mapped through the same expansion, so the CI at level 1 - a excludes
0 exactly when p < a (up to the +1 correction). `own` = mean_i own_i is the plain
tracking statistic: a PASS needs it positive (the output must change where the boundaries are
crossed, not merely less so with the boundaries removed).

`alignment_matrix` / `contrast`: C3 version 2's own-versus-mismatched alignment (Spearman of an
input's change with its own crossings minus with other inputs'), kept for the rows' details.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as _st

from polyaudit.analyses.outputs import DISTRIBUTION, OutputSpace, f64
from polyaudit.errors import PolyauditError
from polyaudit.stats import (
    Interval,
    bootstrap_p_value,
    bootstrap_resamples,
    percentile_ci,
    spearman_rows,
)

FD_STEP = 1.0 / 16  # the linearized control's forward difference, as a fraction of a step
# relative |difference of log-probabilities| below which a real and a frozen output agree (exact:
# float64 walks; linearized: forward differences of float32 models)
EQUAL_TOL = {True: 1e-9, False: 1e-4}


def varying(a: np.ndarray) -> np.ndarray:
    """bool [m]: rows of `a` [m, K] that are not constant."""
    return np.ptp(np.asarray(a, dtype=np.float64), axis=1) > 0


@dataclass(frozen=True)
class Tracking:
    """Per-polyline tracking of crossings against real and frozen-code change, and its bootstrap."""

    keep: np.ndarray  # bool [M]: polylines taking part (crossings vary over the steps)
    own: np.ndarray  # [m]: Spearman(c_i, s_i) of the kept polylines (0 where s_i is constant)
    frozen: np.ndarray  # [m]: Spearman(c_i, s0_i), mean over the anchors (0 where s0_i is constant)
    boot: np.ndarray  # bootstrap replicates of the effect (mean of d over resampled polylines)

    @property
    def d(self) -> np.ndarray:
        return self.own - self.frozen

    @property
    def effect(self) -> float:
        return float(self.d.mean())

    @property
    def own_mean(self) -> float:
        return float(self.own.mean())

    @property
    def frozen_mean(self) -> float:
        return float(self.frozen.mean())

    @property
    def n(self) -> int:
        return int(self.own.size)

    @property
    def p(self) -> float:
        return expanded_p(self.boot, self.n)

    @property
    def interval(self) -> Interval:
        return expanded_interval(self.boot, self.n)


def _expand(m: int) -> float:
    return float(np.sqrt(m / (m - 1)))


def _tail(boot: np.ndarray, a: float, upper: bool) -> float:
    """The a-tail bound of the replicates (lower or upper); beyond their resolution (a below
    1 / (B + 1)) a normal tail around their mean, never inside the extreme replicate."""
    b = np.asarray(boot, dtype=np.float64)
    b = b[np.isfinite(b)]
    if a >= 1.0 / (b.size + 1):
        lo, hi = percentile_ci(boot, 1.0 - 2.0 * a)
        return hi if upper else lo
    z = float(_st.norm.isf(a)) * float(b.std())
    return max(float(b.max()), float(b.mean()) + z) if upper else min(float(b.min()), float(b.mean()) - z)


def expanded_interval(boot: np.ndarray, m: int) -> Interval:
    """The expanded percentile interval of bootstrap replicates of a mean of m units, at any level
    (module docstring; `_tail` beyond the replicates' resolution)."""

    def at(level: float) -> tuple[float, float]:
        z = _expand(m) * float(_st.t.ppf(0.5 + level / 2.0, m - 1))
        a = float(_st.norm.sf(z))
        return _tail(boot, a, upper=False), _tail(boot, a, upper=True)

    return at


def expanded_p(boot: np.ndarray, m: int) -> float:
    """The two-sided bootstrap p-value of `boot` (`_tail`'s normal tail where no replicate reaches
    0) mapped through the expansion of `expanded_interval`: the level at which its bound reaches 0."""
    p = bootstrap_p_value(boot)
    b = np.asarray(boot, dtype=np.float64)
    b = b[np.isfinite(b)]
    if p >= 1.0:
        return 1.0
    if np.all(b > 0) or np.all(b < 0):
        sd = float(b.std())
        p = min(p, 2.0 * float(_st.norm.sf(abs(float(b.mean())) / sd)) if sd > 0 else 0.0)
    t = float(_st.norm.isf(p / 2.0)) / _expand(m)
    return float(min(1.0, 2.0 * _st.t.sf(t, m - 1)))


def _rho(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Spearman of each row pair, 0 where the change side is constant (rows of c vary)."""
    return np.nan_to_num(spearman_rows(c, s), nan=0.0)


def tracking_test(crossings: np.ndarray, change: np.ndarray, change_frozen: np.ndarray, *, n_boot: int,
                  rng: np.random.Generator, min_polylines: int = 3) -> Tracking | str:
    """Tracking of M polylines against the frozen-code control (module docstring): crossings and
    change [M, K], the control's change [A, M, K] (one per anchor); the reason when fewer than
    `min_polylines` have varying crossings."""
    c, s, s0 = (np.asarray(a, dtype=np.float64) for a in (crossings, change, change_frozen))
    if c.shape != s.shape or c.ndim != 2 or c.shape[1] < 2 or s0.ndim != 3 or s0.shape[1:] != c.shape:
        raise PolyauditError(f"need crossings and change [M, K >= 2] and the control [A, M, K], got {c.shape}, "
                             f"{s.shape}, {s0.shape}")
    keep = varying(c)
    m = int(keep.sum())
    if m < max(min_polylines, 2):
        return f"only {m} of {c.shape[0]} polylines cross a varying number of boundaries per step (need {min_polylines})"
    own = _rho(c[keep], s[keep])
    frozen = np.mean([_rho(c[keep], f[keep]) for f in s0], axis=0)
    idx = np.stack(bootstrap_resamples(m, max(int(n_boot), 1), rng))
    return Tracking(keep=keep, own=own, frozen=frozen, boot=(own - frozen)[idx].mean(axis=1))


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
    """(effect, own, mismatch) of an alignment matrix: mean diagonal minus mean off-diagonal."""
    m = r.shape[0]
    own = float(np.trace(r)) / m
    mismatch = (float(r.sum()) - float(np.trace(r))) / (m * (m - 1))
    return own - mismatch, own, mismatch


# ---- the control's arithmetic (`polyaudit.analyses.polylines`, the hook evaluators) ------------


def fd_probes(anchors: np.ndarray, points: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probe points [m, d], fraction [m]): the linearized control's forward-difference points,
    FD_STEP * reach from each anchor towards its point, and how far along anchor -> point they lie
    (0 where the point is the anchor)."""
    a, p = np.asarray(anchors, dtype=np.float64), np.asarray(points, dtype=np.float64)
    dist = np.linalg.norm((p - a).reshape(p.shape[0], -1), axis=1)
    frac = np.divide(FD_STEP * np.asarray(reach, dtype=np.float64), dist, out=np.zeros(dist.shape), where=dist > 0)
    return a + frac.reshape(-1, *([1] * (a.ndim - 1))) * (p - a), frac


def linearized(at_anchor: np.ndarray, at_probe: np.ndarray, fraction: np.ndarray,
               space: OutputSpace = DISTRIBUTION) -> np.ndarray:
    """The frozen-code control of evaluators that only see outputs: log-probabilities [m, C] at each
    point from the forward difference of the outputs between its anchor (`at_anchor`) and a probe
    `fraction` [m] of the way towards it (`at_probe`; `fd_probes`), i.e. the rest of the model
    linearized at the anchor. Log-probabilities differ from logits by one constant per row, so
    extrapolating them and renormalising extrapolates the logits. Embeddings (`space`) are
    extrapolated as unit vectors and scaled back to unit length."""
    a, b = f64(at_anchor), f64(at_probe)
    f = f64(fraction)[:, None]
    # masked outputs (-inf) stay put
    slope = torch.where(a.isfinite() & b.isfinite() & (f > 0), (b - a) / torch.where(f > 0, f, 1.0), 0.0)
    return space.renormalise((a + slope).numpy())


def same_output(logp: np.ndarray, frozen: np.ndarray, exact: bool) -> np.ndarray:
    """bool [...]: where a real and a frozen output agree (log-probabilities [..., C] within
    `EQUAL_TOL` relative): the boundaries between them cannot have changed it."""
    a, b = f64(logp), f64(frozen)
    gap = torch.where(a.isfinite() & b.isfinite(), (a - b).abs(),
                      torch.where(a == b, 0.0, math.inf))
    scale = torch.where(a.isfinite(), a.abs(), 0.0).amax(dim=-1).clamp_min(1.0)
    return np.asarray((gap.amax(dim=-1) <= EQUAL_TOL[exact] * scale).numpy())
