"""Paths through a site's activation space, and the boundaries and semantics met along them (C2, C3).

A path is a polyline of K points at one site (linear or spherical interpolation between two
activations, a ray of scalings c * h, a move h + t v along a feature direction). `walk_polylines`
runs the rest of the model on it through a `Downstream` (see `polyaudit.interventions.downstream`) and
returns, for each of the K - 1 steps, the number of downstream boundaries crossed, plus the output
distribution at every point:

- EXACT (ReLU `nn.Sequential` after the site): each step is a segment, walked piece by piece with
  `polyaudit.measures.polytopes.walk_segment`; no crossing can be missed.
- APPROXIMATE (smooth activations, or anything with attention / layer norm downstream): `sub`
  evenly spaced points per step, then `levels` rounds of bisection of every interval whose codes
  differ; a step's count is the summed Hamming distance of its final intervals (a unit that flips
  and flips back inside one final interval is missed), each crossing localised to the midpoint of
  its final interval.

Semantic change is measured in the evaluator's output space (`Downstream.space`,
`polyaudit.analyses.outputs`): JS / KL in bits between output distributions (log-probabilities) of
a model with an output head; the cosine distance between the own representations of a headless
one (the final hidden state at the kept position, or the pooled sentence embedding).

The FROZEN-CODE CONTROL (`Downstream.frozen`): the output at a point had every downstream unit kept
the state it has at an ANCHOR. Points reached without crossing a boundary that can change the
output give the same output both ways, so the control shares the polyline's geometry but not what
its boundaries do (`summarize_paths` says which control a walk gets):
- anchored, for EXACT (piecewise-linear) evaluators: the codes of a path's ends or of C3's
  reference point, at every point: the anchor polytope's affine map, the network with the
  polyline's boundaries removed (a gated float64 forward);
- per step (`kinks`): each step's end with the codes of its start, the model linearized at the
  step's start for evaluators that only see outputs (hooks into smooth or transformer models; a
  forward difference over `FD_STEP` of the step). A smooth network has no boundary-free
  counterfactual: linearized at a far anchor it loses every nonlinearity, layer norm's included,
  and saturates; linearized per step it keeps all but the step's own curvature. C2's
  boundary-induced change per unit length uses the per-step control on every evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from polyaudit.analyses.alignment import FD_STEP, same_output
from polyaudit.analyses.outputs import DISTRIBUTION, OutputSpace
from polyaudit.errors import PolyauditError

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def stored(logp: np.ndarray) -> np.ndarray:
    """Outputs as kept: float64 where the evaluator computes in float64 (small exact nets), float32
    otherwise (a language model's [P, K, V] stays half the size)."""
    a = np.asarray(logp)
    return a if a.dtype == np.float64 else a.astype(np.float32)


class Downstream(Protocol):
    """The rest of a model from a site: codes of the later units and output log-probabilities."""

    exact: bool  # crossings from `segment` are exact (piecewise-linear net after the site)
    codes_exact: bool  # sign codes are the true unit states (ReLU-like), not a smooth proxy
    n_units: int
    space: OutputSpace  # what the outputs are and how their change is measured

    def outputs(self, points: np.ndarray, ctx: np.ndarray | None,
                keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(codes bool [m, n_units], log-probabilities float [m', C]) at `points` [m, d]; `ctx`
        [m] names the input (context) each point is written into; log-probabilities only for the
        rows where `keep` (bool [m]) is True (all rows when None)."""
        ...

    def segment(self, p0: np.ndarray, p1: np.ndarray, ctx: int | None) -> np.ndarray:
        """Sorted crossings t in (0, 1) along p0 -> p1 (exact Downstreams only)."""
        ...

    def frozen(self, anchors: np.ndarray, points: np.ndarray, ctx: np.ndarray | None, at_anchor: np.ndarray,
               reach: np.ndarray) -> np.ndarray:
        """log-probabilities [m, C] at `points` [m, d] with every downstream unit kept in the state it
        has just past `anchors` [m, d] towards the point (the codes frozen at the anchor): exact for
        piecewise-linear evaluators; otherwise the model linearized at the anchor, by a forward
        difference of length FD_STEP * reach [m] towards the point. `at_anchor` [m, C]: the
        log-probabilities at the anchors (the walk has them)."""
        ...


def lerp(a: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """[T, d]: (1 - t) a + t b."""
    t = np.asarray(ts, dtype=np.float64)[:, None]
    return (1.0 - t) * np.asarray(a, dtype=np.float64) + t * np.asarray(b, dtype=np.float64)


def slerp(a: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """[T, d]: the direction moves along the great circle from a/|a| to b/|b|, the norm linearly
    from |a| to |b| (ends exactly at a and b). Nearly parallel or antiparallel ends: `lerp`."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return lerp(a64, b64, ts)
    ua, ub = a64 / na, b64 / nb
    omega = float(np.arccos(np.clip(ua @ ub, -1.0, 1.0)))
    if omega < 1e-6 or np.pi - omega < 1e-6:
        return lerp(a64, b64, ts)
    t = np.asarray(ts, dtype=np.float64)[:, None]
    unit = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    return unit * ((1 - t) * na + t * nb)


@dataclass(frozen=True)
class PolylineWalk:
    """Boundaries and outputs along P polylines of K points, and the frozen-code control."""

    counts: np.ndarray  # int [P, K - 1]: downstream crossings on each step
    logp: np.ndarray  # [P, K, C]: output log-probabilities at each point (`stored`)
    locations: tuple[np.ndarray, ...]  # per path: crossing positions as step index + fraction
    exact: bool
    n_evaluations: int  # single-point forward equivalents spent on the walk
    anchored: np.ndarray  # [A, P, K, C]: outputs with the codes frozen at each anchor
    kinked: np.ndarray | None  # [P, K - 1, C]: each step's end with the codes of its start
    n_control: int  # single-point forward equivalents the control spent
    estimate: np.ndarray | None = None  # [P, 2]: sampled units only: each path's estimated crossings
    # over ALL later units and its standard error (`unit_estimate`)


def _packed(codes: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(codes, dtype=bool), axis=-1)


def _popcount_xor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _POPCOUNT[np.bitwise_xor(a, b)].sum(axis=-1)


def walk_polylines(
    down: Downstream,
    points: np.ndarray,
    ctx: np.ndarray | None = None,
    *,
    sub: int = 4,
    levels: int = 2,
    anchors: tuple[int, ...] = (),
    kinks: bool = False,
    origin: int | None = None,
) -> PolylineWalk:
    """Count boundaries crossed on every step of `points` [P, K, d] (exact or approximate, see the
    module docstring), return the outputs at the K points of each path and the frozen-code control:
    anchored at the point indices `anchors`, and per step when `kinks` (steps run away from
    `origin`, see `step_ends`)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1] < 2:
        raise PolyauditError(f"paths must be [P, K >= 2, d], got shape {pts.shape}")
    c = None if ctx is None else np.asarray(ctx, dtype=np.int64)
    estimate = None
    if down.exact:
        counts, logp, locations, n_eval = _walk_exact(down, pts, c)
    else:
        if sub < 1 or levels < 0:
            raise PolyauditError(f"need sub >= 1 and levels >= 0, got sub={sub} levels={levels}")
        (counts, logp, locations, n_eval), estimate = _walk_approximate(down, pts, c, sub, levels)
    anchored, kinked, n_control = _control(down, pts, c, logp, anchors, step_ends(pts.shape[1], origin) if kinks
                                           else None)
    return PolylineWalk(counts, logp, locations, bool(down.exact), n_eval, anchored, kinked, n_control, estimate)


Walked = tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...], int]  # counts, logp, locations, evaluations


def step_ends(k: int, origin: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) point indices [K - 1] of the steps of a polyline of K points: step j joins
    points j and j + 1 and runs away from `origin` (None: from point 0 on)."""
    j = np.arange(k - 1)
    left = j < (0 if origin is None else origin)
    return np.where(left, j + 1, j), np.where(left, j, j + 1)


def _control(down: Downstream, pts: np.ndarray, c: np.ndarray | None, logp: np.ndarray, anchors: tuple[int, ...],
             steps: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The frozen-code outputs: at every point with the codes of each anchor [A, P, K, C] (the
    anchor itself: its real output), and, with `steps` (start, end indices), at each step's end
    with the codes of its start [P, K - 1, C]; one `Downstream.frozen` call for all, and its cost."""
    n_paths, k, d = pts.shape
    step = np.linalg.norm(np.diff(pts, axis=1), axis=-1)
    jobs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # anchors, points, reach, at anchor
    for a in anchors:
        rest = np.delete(np.arange(k), a)
        jobs.append((np.repeat(pts[:, a:a + 1], k - 1, axis=1), pts[:, rest], np.repeat(step.mean(axis=1), k - 1),
                     np.repeat(logp[:, a:a + 1], k - 1, axis=1)))
    if steps is not None:
        jobs.append((pts[:, steps[0]], pts[:, steps[1]], step.ravel(), logp[:, steps[0]]))
    anchored = np.repeat(stored(logp)[None], len(anchors), axis=0)
    if not jobs:
        return anchored, None, 0
    before = int(getattr(down, "control_evaluations", 0))
    out = down.frozen(np.concatenate([j[0].reshape(-1, d) for j in jobs]),
                      np.concatenate([j[1].reshape(-1, d) for j in jobs]),
                      None if c is None else np.tile(np.repeat(c, k - 1), len(jobs)),
                      np.concatenate([np.asarray(j[3], np.float64).reshape(n_paths * (k - 1), -1) for j in jobs]),
                      np.concatenate([j[2] for j in jobs]))
    out = stored(out).astype(anchored.dtype).reshape(len(jobs), n_paths, k - 1, -1)
    for i, a in enumerate(anchors):
        anchored[i][:, np.delete(np.arange(k), a)] = out[i]
    spent = int(getattr(down, "control_evaluations", 0)) - before
    return anchored, (out[-1] if steps is not None else None), spent


def _walk_approximate(down: Downstream, pts: np.ndarray, c: np.ndarray | None, sub: int,
                      levels: int) -> tuple[Walked, np.ndarray | None]:
    """`sub` dense points per step, then `levels` rounds of bisection where the codes differ; with
    the evaluator's sampled units (`sampling`), each path's estimate over all units (`unit_estimate`)."""
    n_paths, k, d = pts.shape
    # dense points: fractions j / sub of every step, plus the last point
    frac = np.arange(sub) / sub
    steps = pts[:, 1:] - pts[:, :-1]
    dense = (pts[:, :-1, None, :] + frac[None, None, :, None] * steps[:, :, None, :]).reshape(n_paths, -1, d)
    dense = np.concatenate([dense, pts[:, -1:]], axis=1)  # [P, (K-1) sub + 1, d]
    pos = np.concatenate([np.arange(k - 1)[:, None] + frac[None, :], np.full((1, 1), k - 1.0)],
                         axis=None)
    n_dense = dense.shape[1]
    flat_ctx = None if c is None else np.repeat(c, n_dense)
    coarse = np.tile(np.arange(n_dense) % sub == 0, n_paths)  # outputs are kept at the K points only
    codes, logp = down.outputs(dense.reshape(-1, d), flat_ctx, coarse)
    packed = _packed(codes).reshape(n_paths, n_dense, -1)
    logp_coarse = stored(logp).reshape(n_paths, k, -1)
    # per path: sorted positions and packed codes; refine intervals whose codes differ
    path_pos = [pos.copy() for _ in range(n_paths)]
    path_codes = [packed[i] for i in range(n_paths)]
    evaluations = n_paths * n_dense + _bisect(down, pts, c, path_pos, path_codes, levels)
    counts = np.zeros((n_paths, k - 1), dtype=np.int64)
    locations = []
    for i in range(n_paths):
        flips = _popcount_xor(path_codes[i][1:], path_codes[i][:-1])
        mid = 0.5 * (path_pos[i][1:] + path_pos[i][:-1])
        step = np.minimum(np.floor(path_pos[i][:-1]).astype(np.int64), k - 2)
        np.add.at(counts[i], step, flips)
        locations.append(np.repeat(mid, flips))
    sampling = getattr(down, "sampling", None)
    estimate = (None if sampling is None else
                np.stack([unit_estimate(path_codes[i], sampling) for i in range(n_paths)]))
    return (counts, logp_coarse, tuple(locations), int(evaluations)), estimate


def unit_estimate(packed_codes: np.ndarray, sampling: Any) -> np.ndarray:
    """(estimated crossings, standard error) of one path over ALL later units from the sampled
    units' codes at its points (packed [points, bytes]): per unit, the flips between consecutive
    points; the stratified Horvitz-Thompson total over sites (each sampled unit stands for
    width / sampled units of its site) and its variance with the finite-population correction,
    sum over sites of width^2 (1 - sampled / width) s^2 / sampled, s^2 the sample variance of
    the flips per unit within the site."""
    m = sampling.n_sampled
    bits = np.unpackbits(packed_codes, axis=-1)[:, :m].astype(bool)
    per_unit = np.count_nonzero(bits[1:] != bits[:-1], axis=0).astype(np.float64)
    strata = sampling.strata()
    total, var = 0.0, 0.0
    for j, (w, k) in enumerate(zip(sampling.widths, sampling.sampled, strict=True)):
        f = per_unit[strata == j]
        total += w * float(f.mean())
        if k > 1:
            var += w * w * (1.0 - k / w) * float(f.var(ddof=1)) / k
    return np.array([total, np.sqrt(var)])


def _bisect(down: Downstream, pts: np.ndarray, c: np.ndarray | None, path_pos: list[np.ndarray],
            path_codes: list[np.ndarray], levels: int) -> int:
    """`levels` rounds of bisection of every interval whose codes differ, inserting the midpoints
    into `path_pos` and `path_codes` (in place); the evaluations spent."""
    evaluations = 0
    for _ in range(levels):
        jobs: list[tuple[int, np.ndarray]] = []
        for i in range(len(path_codes)):
            diff = _popcount_xor(path_codes[i][1:], path_codes[i][:-1]) > 0
            if diff.any():
                jobs.append((i, np.flatnonzero(diff)))
        if not jobs:
            break
        mids_pos = [0.5 * (path_pos[i][j] + path_pos[i][j + 1]) for i, j in jobs]
        mids = np.concatenate([_at(pts[i], m) for (i, _), m in zip(jobs, mids_pos, strict=True)])
        mid_ctx = None if c is None else np.concatenate(
            [np.full(len(m), c[i]) for (i, _), m in zip(jobs, mids_pos, strict=True)])
        mid_codes, _ = down.outputs(mids, mid_ctx, np.zeros(mids.shape[0], dtype=bool))
        evaluations += mids.shape[0]
        mid_packed = _packed(mid_codes)
        start = 0
        for (i, j), m in zip(jobs, mids_pos, strict=True):
            new_codes = mid_packed[start:start + len(m)]
            start += len(m)
            path_pos[i] = np.insert(path_pos[i], j + 1, m)
            path_codes[i] = np.insert(path_codes[i], j + 1, new_codes, axis=0)
    return evaluations


def _at(path: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Points of polyline `path` [K, d] at positions (step index + fraction)."""
    k = path.shape[0]
    j = np.minimum(np.floor(positions).astype(np.int64), k - 2)
    f = (positions - j)[:, None]
    return path[j] + f * (path[j + 1] - path[j])


def _collinear(path: np.ndarray) -> np.ndarray | None:
    """Positions s [K] of the points along the segment path[0] -> path[-1] when the polyline is
    that segment traversed forward (s increasing from 0 to 1); else None."""
    d = path[-1] - path[0]
    dd = float(d @ d)
    if dd == 0.0:
        return None
    s = (path - path[0]) @ d / dd
    resid = path - path[0] - s[:, None] * d
    scale = float(np.max(np.abs(path))) or 1.0
    if np.max(np.abs(resid)) > 1e-9 * scale or not np.all(np.diff(s) > 0):
        return None
    return s


def _walk_exact(down: Downstream, pts: np.ndarray, ctx: np.ndarray | None) -> Walked:
    n_paths, k, d = pts.shape
    before = int(getattr(down, "segment_evaluations", 0))
    _, logp = down.outputs(pts.reshape(-1, d), None if ctx is None else np.repeat(ctx, k))
    counts = np.zeros((n_paths, k - 1), dtype=np.int64)
    locations = []
    evaluations = n_paths * k
    # every segment to walk: a collinear path is one walk over its whole length, else one per step
    jobs: list[tuple[int, int | None]] = []
    lines: list[np.ndarray | None] = []
    for i in range(n_paths):
        s = _collinear(pts[i])
        lines.append(s)
        jobs += [(i, None)] if s is not None else [(i, j) for j in range(k - 1)]
    ends = [(pts[i, 0], pts[i, -1]) if j is None else (pts[i, j], pts[i, j + 1]) for i, j in jobs]
    job_ctx = [None if ctx is None else int(ctx[i]) for i, _ in jobs]
    many = getattr(down, "segments", None)
    if callable(many) and jobs:  # walked side by side (see ModuleDownstream.segments)
        walked = many(np.stack([e[0] for e in ends]), np.stack([e[1] for e in ends]),
                      None if ctx is None else np.asarray(job_ctx, dtype=np.int64))
    else:
        walked = [down.segment(p0, p1, c) for (p0, p1), c in zip(ends, job_ctx, strict=True)]
    by_path: dict[int, list[tuple[int | None, np.ndarray]]] = {}
    for (i, j), t in zip(jobs, walked, strict=True):
        by_path.setdefault(i, []).append((j, t))
    for i in range(n_paths):
        s = lines[i]
        if s is not None:  # crossings of the one walk binned into the steps
            t = by_path[i][0][1]
            step = np.clip(np.searchsorted(s, t, side="right") - 1, 0, k - 2)
            counts[i] = np.bincount(step, minlength=k - 1)
            locations.append(step + (t - s[step]) / (s[step + 1] - s[step]))
            continue
        locs = []
        for j, t in by_path[i]:
            assert j is not None
            counts[i, j] = t.size
            locs.append(j + t)
        locations.append(np.concatenate(locs) if locs else np.zeros(0))
    evaluations += int(getattr(down, "segment_evaluations", 0)) - before
    return counts, stored(logp).reshape(n_paths, k, -1), tuple(locations), int(evaluations)


@dataclass(frozen=True)
class PathSummary:
    """What C2 and C3 keep of a walk: counts and divergences, not the full output distributions
    (a language model's vocabulary would make those [P, K, V])."""

    counts: np.ndarray  # int [P, K - 1]
    js_step: np.ndarray  # float [P, K - 1]: change (`space`: JS in bits, or cosine) between the outputs
    # at both ends of each step (the js_ names are kept from the distribution case)
    js_frozen: np.ndarray  # float [A, P, K - 1]: the same with the codes frozen at each anchor
    js_kink: np.ndarray | None  # float [P, K - 1]: JS between each step's real end and its end with
    # the codes of its start (None: not asked for)
    step_length: np.ndarray  # float [P, K - 1]: Euclidean length of each step at the site
    kl_ref: np.ndarray  # float [P, K]: KL(p_ref || p_k) in bits, or the cosine distance to the reference
    # (zeros when no reference is given)
    top: np.ndarray | None  # int [P, K]: the most likely output at each point (None: embeddings)
    locations: tuple[np.ndarray, ...]
    exact: bool
    n_evaluations: int  # the walk's single-point forward equivalents, the control's included
    n_control: int  # of which the frozen-code control
    space: OutputSpace = DISTRIBUTION  # what the outputs were and how change was measured
    estimate: np.ndarray | None = None  # [P, 2]: with sampled units, each path's estimated crossings over
    # all later units and its standard error; `counts` then count the sampled units' crossings (a
    # constant multiple of the estimate when the sites are equally wide: ranks are unchanged)
    sampling: Any = None  # the evaluator's UnitSample (None: every unit read)


def _summary(w: PolylineWalk, ref: int | None, space: OutputSpace = DISTRIBUTION) -> tuple[Any, ...]:
    """One chunk's change per step, control change (equal to the real one where the outputs
    agree), kinks, change from the reference, top: the control anchored where the walk has anchors,
    else per step (start real, end frozen). Change is measured in `space` (JS in bits, or cosine)."""
    js = space.change(w.logp[:, 1:], w.logp[:, :-1])
    frozen = []
    for out in w.anchored:
        same = same_output(w.logp, out, w.exact)
        frozen.append(np.where(same[:, 1:] & same[:, :-1], js, space.change(out[:, 1:], out[:, :-1])))
    kink = None
    if w.kinked is not None:
        first, last = step_ends(w.logp.shape[1], ref)
        same = same_output(w.logp[:, last], w.kinked, w.exact)
        kink = np.where(same, 0.0, space.change(w.logp[:, last], w.kinked))
        if not frozen:
            frozen.append(np.where(same, js, space.change(w.logp[:, first], w.kinked)))
    kl = (space.from_reference(w.logp[:, ref:ref + 1], w.logp) if ref is not None
          else np.zeros(w.logp.shape[:2]))
    return w.counts, js, np.stack(frozen), kink, kl, space.top(w.logp)


def summarize_paths(
    down: Downstream,
    points: np.ndarray,
    ctx: np.ndarray | None = None,
    *,
    sub: int = 4,
    levels: int = 2,
    ref: int | None = None,
    anchors: tuple[int, ...] = (),
    kinks: bool = False,
    chunk: int = 16,
) -> PathSummary:
    """`walk_polylines` over chunks of `chunk` paths, keeping per-step JS, the control's JS
    (`js_frozen`: codes frozen at each of `anchors` for exact evaluators, else per step; see the
    module docstring), the per-step kinks when `kinks`, KL to point `ref` and the top output of
    every point (steps run away from `ref`). Where a real and a frozen output agree (`same_output`)
    the control's JS is the real one and the kink 0: inert boundaries leave no trace."""
    pts = np.asarray(points, dtype=np.float64)
    space = getattr(down, "space", DISTRIBUTION)
    parts, spent = [], [0, 0]
    estimates: list[np.ndarray] = []
    locations: list[np.ndarray] = []
    exact = bool(down.exact)
    for start in range(0, pts.shape[0], chunk):
        sl = slice(start, start + chunk)
        w = walk_polylines(down, pts[sl], None if ctx is None else np.asarray(ctx)[sl], sub=sub, levels=levels,
                           anchors=anchors if exact else (), kinks=kinks or not exact or not anchors, origin=ref)
        parts.append(_summary(w, ref, space))
        if w.estimate is not None:
            estimates.append(w.estimate)
        locations += list(w.locations)
        spent[0] += w.n_evaluations + w.n_control
        spent[1] += w.n_control
    if not parts:
        raise PolyauditError("no paths to walk")

    def cat(i: int, axis: int = 0) -> Any:
        return None if parts[0][i] is None else np.concatenate([p[i] for p in parts], axis=axis)

    return PathSummary(
        counts=cat(0), js_step=cat(1), js_frozen=cat(2, axis=1), js_kink=cat(3),
        step_length=np.linalg.norm(np.diff(pts, axis=1), axis=-1), kl_ref=cat(4), top=cat(5),
        locations=tuple(locations), exact=exact, n_evaluations=spent[0], n_control=spent[1], space=space,
        estimate=np.concatenate(estimates) if estimates else None, sampling=getattr(down, "sampling", None),
    )


def sampling_details(walk: PathSummary, rows: slice = slice(None)) -> tuple[dict[str, Any], str]:
    """(details, note phrase) of a walk whose crossings were counted on sampled units ({}, "" when
    every unit was read): the sample, each path's estimated total over all later units and its
    standard error, and the median relative standard error."""
    if walk.estimate is None or walk.sampling is None:
        return {}, ""
    est, se = walk.estimate[rows, 0], walk.estimate[rows, 1]
    rel = np.divide(se, est, out=np.full(est.shape, np.nan), where=est > 0)
    median_rel = float(np.nanmedian(rel)) if np.isfinite(rel).any() else float("nan")
    details = {"units_sampled": walk.sampling.n_sampled, "units_total": walk.sampling.n_units,
               "crossings_estimated_per_path": est.tolist(), "crossings_se_per_path": se.tolist(),
               "crossings_median_relative_se": median_rel}
    note = (f"{float(est.mean()):,.0f} crossings per path over all {walk.sampling.n_units:,} later units, "
            f"estimated from {walk.sampling.n_sampled:,} (median relative SE {median_rel:.1%})")
    return details, note


def describe(down: Any) -> str:
    """One phrase for row notes: how codes, crossings and the frozen-code control were obtained,
    and (headless models) which output's change counts as semantic change."""
    space = getattr(down, "space", DISTRIBUTION)
    what = "" if space.kind == "distribution" else f"; semantic change: {space.what}"
    return _describe_walk(down) + what


def _describe_walk(down: Any) -> str:
    if down.exact:
        return "crossings exact (ReLU net walked piece by piece); frozen-code control exact (anchored codes)"
    act = getattr(down, "activation", "?")
    codes = (f"codes exact ({act})" if down.codes_exact
             else f"codes approximate: {act} (sign of the pre-activation)")
    why = getattr(down, "not_exact", None)
    sample = getattr(down, "sampling", None)
    sampled = ("" if sample is None else
               f", counted on {sample.n_sampled:,} of the {sample.n_units:,} later units drawn at random "
               f"(the same share of each layer; totals estimated with a standard error, see details)")
    return (f"{codes}; crossings approximate (dense sampling + bisection){sampled}"
            + (f", not exact: {why}" if why else "")
            + f"; frozen-code control: the model linearized at each step's start (forward difference over "
            f"1/{round(1 / FD_STEP)} of the step)")
