"""C2 analysis: polytope boundaries track semantic boundaries along paths between inputs.

Black, Sharkey et al. 2022 (prediction 2, sec. 5): where a path through activation space crosses
many polytope boundaries, the network's output changes a lot; where it crosses few, little. For
pairs of samples (different labels; same-label pairs as a control) the activation at a site is
interpolated (linear and spherical) in `steps` steps; on each step we count the downstream
boundaries crossed per unit of path length (code changes of every later layer, see
`polyaudit.analyses.polylines`: exact for ReLU nets, dense sampling + bisection otherwise) and the
semantic change, the Jensen-Shannon divergence (bits) between the output distributions at its two
ends; and the same change with every downstream unit kept in the state it has at one end of the
path, then the other (the frozen-code control: the network with the path's boundaries removed,
exact, for piecewise-linear evaluators; for the others, which have no boundary-free
counterfactual, the model linearized at each step's start: see `polyaudit.analyses.polylines`).

Rows (keys of the returned dict):
  linear, slerp   mean over different-label paths of Spearman(crossings per unit length, JS) -
                  Spearman(crossings per unit length, frozen-code JS) over the steps, the latter
                  averaged over the two ends (`polyaudit.analyses.alignment`): boundaries that
                  cannot change the output give exactly 0 whatever the paths' geometry. Bootstrap CI
                  and p over paths; paths with a constant count are left out (counted). A PASS also
                  needs the plain tracking (mean per-path Spearman of crossings and real JS) positive.
  diff-vs-same    Cliff's delta, different- vs same-label paths (linear), of the boundary-induced
                  change per unit path length: per step the JS distance (square root of JS) between
                  the real output at its end and the output there with the codes of its start,
                  divided by the step's length (a
                  crossing's gap grows with how far the step runs past it; so divided, it does not
                  grow with the step), summed along the path and divided by the path's length.
                  Boundaries that cannot change the output give 0 on every path; longer paths alone
                  do not raise it. Bootstrap (each group resampled) CI and p, expanded as in
                  `polyaudit.analyses.alignment` for the smaller group.
All are predicted positive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.alignment import Tracking, expanded_interval, expanded_p, tracking_test
from polyaudit.analyses.polylines import (
    PathSummary,
    describe,
    lerp,
    sampling_details,
    slerp,
    summarize_paths,
)
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.serial import encode_array
from polyaudit.stats import (
    bootstrap_resamples,
    cliffs_delta,
)
from polyaudit.verdict import Evidence

STAT_TRACK = ("mean per-path [spearman(crossings per unit length, JS) - spearman(crossings per unit length, "
              "frozen-code JS)] per step")
STAT_CONTRAST = "cliffs delta(boundary-induced change per unit length: different-label vs same-label paths)"
ROWS: tuple[str, ...] = ("linear", "slerp", "diff-vs-same")
ROW_STAT = {"linear": "track", "slerp": "track", "diff-vs-same": "contrast"}  # the statistic of each row
MIN_PATHS = 8
N_BOOT_MIN = 1000  # resampling a mean is cheap; 2/1001, the smallest bootstrap p, survives Holm
MIN_TRACK = 0.1  # Spearman rho: Cohen's "small" correlation (docs/claims.md, C2)
MIN_DELTA = 0.147  # Cliff's delta: below it "negligible" (Romano et al. 2006)

SPEC = ClaimSpec(
    id="C2", version=2, title="polytope boundaries track semantic boundaries",
    source="Black, Sharkey et al. 2022, Polytope Lens, prediction 2 (sec. 5)",
    statistics=(Statistic("track", STAT_TRACK, "positive", units="Spearman rho", min_effect=MIN_TRACK),
                Statistic("contrast", STAT_CONTRAST, "positive", units="Cliff's delta", min_effect=MIN_DELTA)),
    checks=(Check("boundaries-track-semantics", "track", sites=("mlp_pre", "resid"), min_samples=2 * MIN_PATHS),),
    plots=(PlotSpec("paths", reads=("boundary_density", "semantic_change", "crossings_diff", "crossings_same")),),
    modules=("polyaudit.analyses.c2", "polyaudit.analyses.alignment", "polyaudit.analyses.polylines",
             "polyaudit.interventions.lens", "polyaudit.interventions.evaluators"),
)
CLAIM, VERSION = SPEC.id, SPEC.version


# Smooth activations (GELU, SiLU: codes are the sign of a pre-activation, a proxy) downstream of a
# large model put tens of thousands of units after the site, and a path between two samples crosses
# tens of thousands of their sign changes: every interval is bisected and every crossing is located.
# Past this many later units the walks read the codes of a random sample of them instead (the same
# share of each layer, seeded), count their crossings, and estimate every unit's total with a
# standard error (`polyaudit.analyses.polylines.unit_estimate`). The statistics rank counts within
# a path, so a constant scale leaves them unchanged; what the sample adds is sampling noise, which
# the per-path standard error in the details measures. ReLU codes (exact) are never sampled.
SAMPLED_UNITS = 4096


@dataclass(frozen=True)
class PathSettings:
    n_paths: int  # different-label paths (and as many same-label paths)
    steps: int  # steps per path (the Spearman is over these)
    sub: int  # approximate crossings: dense points per step
    levels: int  # approximate crossings: bisection rounds
    units: int = SAMPLED_UNITS  # smooth codes: crossings counted on this many later units at random


SETTINGS: dict[str, PathSettings] = {
    "quick": PathSettings(n_paths=16, steps=10, sub=2, levels=1),
    "default": PathSettings(n_paths=48, steps=16, sub=2, levels=1),
    "paper": PathSettings(n_paths=128, steps=32, sub=4, levels=2, units=4 * SAMPLED_UNITS),
}


def settings_for(profile_name: str) -> PathSettings:
    return SETTINGS.get(profile_name, SETTINGS["default"])


def draw_pairs(labels: np.ndarray, n_pairs: int, rng: np.random.Generator, same: bool) -> np.ndarray:
    """int [m, 2] distinct sample pairs with different (or, `same`, equal) labels; m <= n_pairs."""
    y = np.asarray(labels)
    n = y.size
    out: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(50 * n_pairs):
        if len(out) >= n_pairs:
            break
        i, j = (int(v) for v in rng.choice(n, size=2, replace=False))
        if (y[i] == y[j]) != same or (i, j) in seen:
            continue
        seen.add((i, j))
        out.append((i, j))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def units_digest(units: np.ndarray) -> str:
    """Short digest of the path (or input) indices a bootstrap resampled: rows of two runs pair
    replicate by replicate only when they resampled the same units (see report.baseline)."""
    return hashlib.sha256(np.asarray(units, dtype=np.int64).tobytes()).hexdigest()[:16]


def _paths(acts: np.ndarray, pairs: np.ndarray, steps: int, kind: str) -> np.ndarray:
    ts = np.linspace(0.0, 1.0, steps + 1)
    interp = lerp if kind == "linear" else slerp
    return np.stack([interp(acts[i], acts[j], ts) for i, j in pairs])


def density(walk: PathSummary) -> np.ndarray:
    """[P, K - 1]: crossings per unit of path length on each step (0 on a step of length 0)."""
    length = walk.step_length
    return np.divide(walk.counts, length, out=np.zeros(length.shape), where=length > 0)


def boundary_rate(walk: PathSummary) -> np.ndarray:
    """[P]: the boundary-induced change per unit path length of each path: per step the JS distance
    between the real and the frozen-code output at its end, per unit of step length, summed and
    divided by the path's length (see the module docstring)."""
    step = walk.step_length
    assert walk.js_kink is not None
    gap = np.divide(np.sqrt(walk.js_kink), step, out=np.zeros(step.shape), where=step > 0)
    length = step.sum(axis=1)
    return np.divide(gap.sum(axis=1), length, out=np.zeros(length.shape), where=length > 0)


# ---- measure ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Walks:
    """The paths of one site: different-label pairs first, then same-label pairs (linear only)."""

    diff: np.ndarray  # int [m, 2]: different-label pairs
    same: np.ndarray  # int [m', 2]: same-label pairs
    linear: PathSummary  # over diff + same
    slerp: PathSummary  # over diff


@dataclass(frozen=True)
class Contrast:
    """Boundary-induced change per unit length, different- vs same-label paths (linear)."""

    rate_diff: np.ndarray
    rate_same: np.ndarray
    delta: float
    boot: np.ndarray  # bootstrap replicates of the delta (each group resampled)
    length: np.ndarray  # path length at the site, diff then same
    crossings: np.ndarray  # crossings per path, diff then same


def walk_pairs(down: Any, x: np.ndarray, y: np.ndarray, ctx: np.ndarray | None, settings: PathSettings,
               g_diff: np.random.Generator, g_same: np.random.Generator) -> Walks | str:
    """Draw the pairs and walk their paths, or the reason there are too few."""
    diff = draw_pairs(y, settings.n_paths, g_diff, same=False)
    same = draw_pairs(y, settings.n_paths, g_same, same=True)
    if len(diff) < MIN_PATHS:
        return f"only {len(diff)} pairs with different labels (need {MIN_PATHS})"
    walks: dict[str, PathSummary] = {}
    for kind in ("linear", "slerp"):
        pairs = np.concatenate([diff, same]) if kind == "linear" else diff
        pts = _paths(x, pairs, settings.steps, kind)
        walks[kind] = summarize_paths(down, pts, None if ctx is None else np.asarray(ctx)[pairs[:, 0]],
                                      sub=settings.sub, levels=settings.levels, anchors=(0, settings.steps),
                                      kinks=kind == "linear")
    return Walks(diff=diff, same=same, linear=walks["linear"], slerp=walks["slerp"])


def measure_tracking(walk: PathSummary, n_diff: int, n_boot: int, rng: np.random.Generator) -> Tracking | str:
    """Tracking against the frozen-code control over the first `n_diff` (different-label) paths."""
    sl = slice(0, n_diff)
    return tracking_test(density(walk)[sl], walk.js_step[sl], walk.js_frozen[:, sl], n_boot=max(n_boot, N_BOOT_MIN),
                         rng=rng, min_polylines=MIN_PATHS)


def cliffs_delta_boot(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of Cliff's delta(a, b), each sample resampled on its own: the sign
    matrix of all pairs weighted by the multiplicities of each resample."""
    sign = np.sign(a[:, None] - b[None, :])
    wa = np.stack([np.bincount(r, minlength=a.size) for r in bootstrap_resamples(a.size, n_boot, rng)])
    wb = np.stack([np.bincount(r, minlength=b.size) for r in bootstrap_resamples(b.size, n_boot, rng)])
    return np.einsum("bi,ij,bj->b", wa.astype(np.float64), sign, wb.astype(np.float64)) / (a.size * b.size)


def measure_contrast(walks: Walks, n_boot: int, rng: np.random.Generator) -> Contrast | None:
    """Cliff's delta of the boundary-induced change per unit length, different- vs same-label
    paths (None: too few same-label paths)."""
    n_diff = len(walks.diff)
    if len(walks.same) < MIN_PATHS:
        return None
    rate = boundary_rate(walks.linear)
    a, b = rate[:n_diff], rate[n_diff:]
    return Contrast(rate_diff=a, rate_same=b, delta=cliffs_delta(a, b),
                    boot=cliffs_delta_boot(a, b, max(n_boot, N_BOOT_MIN), rng),
                    length=walks.linear.step_length.sum(axis=1),
                    crossings=walks.linear.counts.sum(axis=1).astype(float))


# ---- rows -------------------------------------------------------------------------------------


def boundaries_track_semantics(
    down: Any,
    acts: np.ndarray,
    labels: np.ndarray,
    *,
    site: str,
    rng: np.random.Generator,
    settings: PathSettings,
    n_boot: int,
    ctx: np.ndarray | None = None,
    notes: str = "",
) -> dict[str, Evidence]:
    """C2 rows for one site. `acts` [n, d]: the site's activation of each sample; `ctx` [n]: the
    context each sample's activation is written back into (None: the site is the input);
    `down`: a Downstream (see `polyaudit.interventions.downstream`)."""
    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels)
    n = x.shape[0]
    note = "; ".join(s for s in (notes, describe(down)) if s)
    if not np.all(np.isfinite(x)):
        return {k: SPEC.failed(f"{site}/{k}", "site activations contain NaN/inf", stat=ROW_STAT[k], n=n)
                for k in ROWS}
    g_diff, g_same, g_lin, g_slerp, g_boot = rng.spawn(5)
    walks = walk_pairs(down, x, y, ctx, settings, g_diff, g_same)
    if isinstance(walks, str):
        return {k: SPEC.failed(f"{site}/{k}", walks, stat=ROW_STAT[k], n=n) for k in ROWS}
    n_diff = len(walks.diff)
    rows: dict[str, Evidence] = {}
    for kind, walk, g in (("linear", walks.linear, g_lin), ("slerp", walks.slerp, g_slerp)):
        rows[kind] = _tracking_row(f"{site}/{kind}", measure_tracking(walk, n_diff, n_boot, g), walk, n_diff,
                                   settings, note=note, n=n)
    contrast = measure_contrast(walks, n_boot, g_boot)
    if contrast is None:
        rows["diff-vs-same"] = SPEC.failed(f"{site}/diff-vs-same", f"only {len(walks.same)} same-label pairs "
                                           f"(need {MIN_PATHS})", stat="contrast", n=n)
        return rows
    rows["diff-vs-same"] = _contrast_row(f"{site}/diff-vs-same", contrast, walks, note=note)
    return rows


def _tracking_row(row_site: str, t: Tracking | str, walk: PathSummary, n_diff: int, settings: PathSettings, *,
                  note: str, n: int) -> Evidence:
    counts, js, js0 = walk.counts[:n_diff], walk.js_step[:n_diff], walk.js_frozen[:, :n_diff].mean(axis=0)
    details: dict[str, Any] = {
        "n_paths": n_diff, "steps": settings.steps, "exact": bool(walk.exact),
        "n_evaluations": walk.n_evaluations, "n_control": walk.n_control,
        "boundary_density": counts.mean(axis=0).tolist(),  # mean crossings per step
        "semantic_change": js.mean(axis=0).tolist(),  # mean JS (bits) per step
        "semantic_change_frozen": js0.mean(axis=0).tolist(),  # the control's (codes frozen at either end)
        "crossings_per_path": counts.sum(axis=1).tolist(),
        "js_per_path": js.sum(axis=1).tolist(),
    }
    if not walk.exact:
        details.update(sub=settings.sub, levels=settings.levels)
    sampled, sampled_note = sampling_details(walk, slice(0, n_diff))
    details.update(sampled)
    if isinstance(t, str):
        return SPEC.failed(row_site, t, stat="track", n=n, details=details)
    details.update(n_valid=t.n, rho_per_path=t.own.tolist(), rho_frozen_per_path=t.frozen.tolist(),
                   own_alignment=t.own_mean, frozen_alignment=t.frozen_mean,
                   boot_effect=encode_array(t.boot), boot_units=units_digest(np.flatnonzero(t.keep)))
    caveat = None
    if not t.own_mean > 0:
        caveat = (f"the output does not change where the boundaries are crossed: own alignment (mean per-path "
                  f"Spearman of crossings and change) {t.own_mean:.2f} is not positive")
    interval = t.interval
    return SPEC.evidence(
        row_site, stat="track", effect=t.effect, ci=interval(0.95), p=t.p, n=t.n, interval=interval, replicates=t.boot,
        caveat=caveat, details=details,
        notes=(f"{note}; {t.n}/{n_diff} paths with varying counts, "
               + (sampled_note if sampled_note else f"{counts.sum(axis=1).mean():.1f} crossings per path")
               + f"; tracking {t.own_mean:.2f} vs {t.frozen_mean:.2f} with the codes frozen"),
    )


def _contrast_row(row_site: str, c: Contrast, walks: Walks, *, note: str) -> Evidence:
    n_diff = len(walks.diff)
    js = walks.linear.js_step
    dens = c.crossings / np.maximum(c.length, 1e-12)
    m = min(c.rate_diff.size, c.rate_same.size)  # the expansion of the smaller group: conservative
    interval = expanded_interval(c.boot, m)
    return SPEC.evidence(
        row_site, stat="contrast", effect=c.delta, ci=interval(0.95), p=expanded_p(c.boot, m),
        n=int(c.length.size), interval=interval, replicates=c.boot,
        notes=(f"{note}; median boundary-induced change per unit length {np.median(c.rate_diff):.3g} (different "
               f"labels) vs {np.median(c.rate_same):.3g} (same label)"),
        details={
            "crossings_diff": c.crossings[:n_diff].tolist(), "crossings_same": c.crossings[n_diff:].tolist(),
            "path_length_diff": c.length[:n_diff].tolist(), "path_length_same": c.length[n_diff:].tolist(),
            "boundary_rate_diff": c.rate_diff.tolist(), "boundary_rate_same": c.rate_same.tolist(),
            "median_density_diff": float(np.median(dens[:n_diff])),
            "median_density_same": float(np.median(dens[n_diff:])),
            "js_total_diff": float(js[:n_diff].sum(axis=1).mean()),
            "js_total_same": float(js[n_diff:].sum(axis=1).mean()),
            "exact": bool(walks.linear.exact), "boot_effect": encode_array(c.boot),
            "boot_units": units_digest(np.concatenate([walks.diff, walks.same]).ravel()),
        },
    )
