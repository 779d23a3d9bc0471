"""C2 analysis: polytope boundaries track semantic boundaries along paths between inputs.

Black, Sharkey et al. 2022 (prediction 2, sec. 5): where a path through activation space crosses
many polytope boundaries, the network's output changes a lot; where it crosses few, little. For
pairs of samples (different labels; same-label pairs as a control) the activation at a site is
interpolated (linear and spherical) in `steps` steps; on each step we count the downstream
boundaries crossed (code changes of every later layer, see `polyaudit.analyses.polylines`: exact for
ReLU nets, dense sampling + bisection otherwise) and the semantic change, the Jensen-Shannon
divergence (bits) between the output distributions at its two ends.

Rows (keys of the returned dict):
  linear, slerp   mean over different-label paths of Spearman(crossings per step, JS per step);
                  bootstrap CI over paths; paths with a constant count or JS are left out (counted).
  diff-vs-same    Cliff's delta of the total crossings per path, different-label vs same-label
                  paths (linear), with a bootstrap CI.
All are predicted positive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.polylines import PathSummary, describe, lerp, slerp, summarize_paths
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.serial import encode_array
from polyaudit.stats import (
    bootstrap_p_value,
    bootstrap_resamples,
    cliffs_delta_with_ci,
    percentile_ci,
    spearman_or_nan,
)
from polyaudit.verdict import Evidence

STAT_TRACK = "mean per-path spearman(boundaries crossed, JS divergence) per step"
STAT_CONTRAST = "cliffs delta(crossings per path: different-label vs same-label)"
ROWS: tuple[str, ...] = ("linear", "slerp", "diff-vs-same")
ROW_STAT = {"linear": "track", "slerp": "track", "diff-vs-same": "contrast"}  # the statistic of each row
MIN_PATHS = 8
N_BOOT_MIN = 1000  # resampling a mean is cheap; 2/1001, the smallest bootstrap p, survives Holm

SPEC = ClaimSpec(
    id="C2", version=1, title="polytope boundaries track semantic boundaries",
    source="Black, Sharkey et al. 2022, Polytope Lens, prediction 2 (sec. 5)",
    statistics=(Statistic("track", STAT_TRACK, "positive", units="Spearman rho"),
                Statistic("contrast", STAT_CONTRAST, "positive", units="Cliff's delta")),
    checks=(Check("boundaries-track-semantics", "track", sites=("mlp_pre", "resid"), min_samples=2 * MIN_PATHS),),
    plots=(PlotSpec("paths", reads=("boundary_density", "semantic_change", "crossings_diff", "crossings_same")),),
    modules=("polyaudit.analyses.c2", "polyaudit.interventions.lens", "polyaudit.interventions.evaluators"),
)
CLAIM, VERSION = SPEC.id, SPEC.version


@dataclass(frozen=True)
class PathSettings:
    n_paths: int  # different-label paths (and as many same-label paths)
    steps: int  # steps per path (the Spearman is over these)
    sub: int  # approximate crossings: dense points per step
    levels: int  # approximate crossings: bisection rounds


SETTINGS: dict[str, PathSettings] = {
    "quick": PathSettings(n_paths=16, steps=10, sub=2, levels=1),
    "default": PathSettings(n_paths=48, steps=16, sub=2, levels=1),
    "paper": PathSettings(n_paths=128, steps=32, sub=4, levels=2),
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


def per_path_spearman(counts: np.ndarray, js: np.ndarray) -> np.ndarray:
    """Spearman(counts[i], js[i]) for each path; NaN where either is constant."""
    return np.array([spearman_or_nan(c.astype(float), j) for c, j in zip(counts, js, strict=True)],
                    dtype=np.float64).reshape(-1)


def _paths(acts: np.ndarray, pairs: np.ndarray, steps: int, kind: str) -> np.ndarray:
    ts = np.linspace(0.0, 1.0, steps + 1)
    interp = lerp if kind == "linear" else slerp
    return np.stack([interp(acts[i], acts[j], ts) for i, j in pairs])


# ---- measure ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Walks:
    """The paths of one site: different-label pairs first, then same-label pairs (linear only)."""

    diff: np.ndarray  # int [m, 2]: different-label pairs
    same: np.ndarray  # int [m', 2]: same-label pairs
    linear: PathSummary  # over diff + same
    slerp: PathSummary  # over diff


@dataclass(frozen=True)
class Tracking:
    """Per-path Spearman(crossings per step, JS per step) of the different-label paths of one
    interpolation, and the bootstrap over the paths where it is defined."""

    rho: np.ndarray  # [n_diff], NaN where the counts or JS are constant
    counts: np.ndarray  # [n_diff, steps]
    js: np.ndarray  # [n_diff, steps]
    replicates: np.ndarray | None  # bootstrap means over valid paths (None: fewer than MIN_PATHS)
    ci: tuple[float, float] | None

    @property
    def valid(self) -> np.ndarray:
        return self.rho[np.isfinite(self.rho)]


@dataclass(frozen=True)
class Contrast:
    """Crossings per path, different- vs same-label (linear), and their Cliff's delta."""

    t_diff: np.ndarray
    t_same: np.ndarray
    delta: float
    ci: tuple[float, float]
    p: float
    length: np.ndarray  # path length at the site, diff then same
    density: np.ndarray  # crossings per unit of path length, diff then same


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
                                      sub=settings.sub, levels=settings.levels)
    return Walks(diff=diff, same=same, linear=walks["linear"], slerp=walks["slerp"])


def measure_tracking(walk: PathSummary, n_diff: int, n_boot: int, rng: np.random.Generator) -> Tracking:
    """Per-path Spearman over the first `n_diff` (different-label) paths of `walk`; the bootstrap
    of their mean over paths when at least MIN_PATHS are defined."""
    counts, js = walk.counts[:n_diff], walk.js_step[:n_diff]
    rho = per_path_spearman(counts, js)
    valid = rho[np.isfinite(rho)]
    if valid.size < MIN_PATHS:
        return Tracking(rho=rho, counts=counts, js=js, replicates=None, ci=None)
    idx = np.stack(bootstrap_resamples(valid.size, max(n_boot, N_BOOT_MIN), rng))
    reps = valid[idx].mean(axis=1)
    return Tracking(rho=rho, counts=counts, js=js, replicates=reps, ci=percentile_ci(reps))


def measure_contrast(x: np.ndarray, walks: Walks, n_boot: int, rng: np.random.Generator) -> Contrast | None:
    """Cliff's delta of crossings per path, different- vs same-label (None: too few same-label)."""
    n_diff = len(walks.diff)
    tot = walks.linear.counts.sum(axis=1).astype(float)
    t_diff, t_same = tot[:n_diff], tot[n_diff:]
    if len(t_same) < MIN_PATHS:
        return None
    delta, lo, hi, p = cliffs_delta_with_ci(t_diff, t_same, max(n_boot, N_BOOT_MIN), rng)
    pairs = np.concatenate([walks.diff, walks.same])
    length = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1)
    return Contrast(t_diff=t_diff, t_same=t_same, delta=delta, ci=(lo, hi), p=p, length=length,
                    density=tot / np.maximum(length, 1e-12))


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
        return {k: SPEC.failed(f"{site}/{k}", "site activations contain NaN/inf", stat="track", n=n) for k in ROWS}
    g_diff, g_same, g_lin, g_slerp, g_boot = rng.spawn(5)
    walks = walk_pairs(down, x, y, ctx, settings, g_diff, g_same)
    if isinstance(walks, str):
        return {k: SPEC.failed(f"{site}/{k}", walks, stat="track", n=n) for k in ROWS}
    n_diff = len(walks.diff)
    rows: dict[str, Evidence] = {}
    for kind, walk, g in (("linear", walks.linear, g_lin), ("slerp", walks.slerp, g_slerp)):
        rows[kind] = _tracking_row(f"{site}/{kind}", measure_tracking(walk, n_diff, n_boot, g), walk,
                                   settings, note=note, n=n)
    contrast = measure_contrast(x, walks, n_boot, g_boot)
    if contrast is None:
        rows["diff-vs-same"] = SPEC.failed(f"{site}/diff-vs-same", f"only {len(walks.same)} same-label pairs "
                                           f"(need {MIN_PATHS})", stat="contrast", n=n)
        return rows
    rows["diff-vs-same"] = _contrast_row(f"{site}/diff-vs-same", contrast, walks, note=note)
    return rows


def _tracking_row(row_site: str, t: Tracking, walk: PathSummary, settings: PathSettings, *, note: str,
                  n: int) -> Evidence:
    n_diff = t.rho.size
    valid = t.valid
    details: dict[str, Any] = {
        "n_paths": n_diff, "n_valid": int(valid.size), "steps": settings.steps,
        "exact": bool(walk.exact), "n_evaluations": walk.n_evaluations,
        "rho_per_path": t.rho.tolist(),
        "boundary_density": t.counts.mean(axis=0).tolist(),  # mean crossings per step
        "semantic_change": t.js.mean(axis=0).tolist(),  # mean JS (bits) per step
        "crossings_per_path": t.counts.sum(axis=1).tolist(),
        "js_per_path": t.js.sum(axis=1).tolist(),
    }
    if not walk.exact:
        details.update(sub=settings.sub, levels=settings.levels)
    if t.replicates is None or t.ci is None:
        return SPEC.failed(row_site, f"only {valid.size} of {n_diff} paths cross a varying "
                           f"number of boundaries (need {MIN_PATHS})", stat="track", n=n, details=details)
    lo, hi = t.ci
    details["boot_effect"] = encode_array(t.replicates)
    details["boot_units"] = units_digest(np.flatnonzero(np.isfinite(t.rho)))
    return SPEC.evidence(
        row_site, stat="track",
        effect=float(valid.mean()), ci=(float(lo), float(hi)), p=float(bootstrap_p_value(t.replicates)),
        n=int(valid.size),
        notes=f"{note}; {valid.size}/{n_diff} paths with varying counts, "
              f"{t.counts.sum(axis=1).mean():.1f} crossings per path",
        details=details,
    )


def _contrast_row(row_site: str, c: Contrast, walks: Walks, *, note: str) -> Evidence:
    n_diff = len(walks.diff)
    js = walks.linear.js_step
    return SPEC.evidence(
        row_site, stat="contrast",
        effect=float(c.delta), ci=(float(c.ci[0]), float(c.ci[1])), p=float(c.p), n=int(c.density.size),
        notes=f"{note}; median crossings {np.median(c.t_diff):.0f} (different labels) vs "
              f"{np.median(c.t_same):.0f} (same label)",
        details={
            "crossings_diff": c.t_diff.tolist(), "crossings_same": c.t_same.tolist(),
            "path_length_diff": c.length[:n_diff].tolist(), "path_length_same": c.length[n_diff:].tolist(),
            "median_density_diff": float(np.median(c.density[:n_diff])),
            "median_density_same": float(np.median(c.density[n_diff:])),
            "js_total_diff": float(js[:n_diff].sum(axis=1).mean()),
            "js_total_same": float(js[n_diff:].sum(axis=1).mean()),
            "exact": bool(walks.linear.exact),
        },
    )
