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

from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.polylines import describe, lerp, slerp, summarize_paths
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
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
    import hashlib

    return hashlib.sha256(np.asarray(units, dtype=np.int64).tobytes()).hexdigest()[:16]


def per_path_spearman(counts: np.ndarray, js: np.ndarray) -> np.ndarray:
    """Spearman(counts[i], js[i]) for each path; NaN where either is constant."""
    from polyaudit.stats import spearman

    out = np.full(counts.shape[0], np.nan)
    for i in range(counts.shape[0]):
        if np.ptp(counts[i]) > 0 and np.ptp(js[i]) > 0:
            out[i] = spearman(counts[i].astype(float), js[i])
    return out


def _paths(acts: np.ndarray, pairs: np.ndarray, steps: int, kind: str) -> np.ndarray:
    ts = np.linspace(0.0, 1.0, steps + 1)
    interp = lerp if kind == "linear" else slerp
    return np.stack([interp(acts[i], acts[j], ts) for i, j in pairs])


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
    from polyaudit.serial import encode_array
    from polyaudit.stats import (
        bootstrap_p_value,
        bootstrap_resamples,
        cliffs_delta_with_ci,
        percentile_ci,
    )

    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels)
    n = x.shape[0]
    how = describe(down)
    note = "; ".join(s for s in (notes, how) if s)

    def fail(key: str, stat: str, reason: str, details: dict[str, Any] | None = None) -> Evidence:
        return SPEC.failed(f"{site}/{key}", reason, stat=stat, n=n, details=details)

    if not np.all(np.isfinite(x)):
        return {k: fail(k, "track", "site activations contain NaN/inf") for k in ROWS}
    g_diff, g_same, g_lin, g_slerp, g_boot = rng.spawn(5)
    diff = draw_pairs(y, settings.n_paths, g_diff, same=False)
    same = draw_pairs(y, settings.n_paths, g_same, same=True)
    if len(diff) < MIN_PATHS:
        reason = f"only {len(diff)} pairs with different labels (need {MIN_PATHS})"
        return {k: fail(k, "track", reason) for k in ROWS}
    walks: dict[str, Any] = {}
    for kind in ("linear", "slerp"):
        pairs = np.concatenate([diff, same]) if kind == "linear" else diff
        pts = _paths(x, pairs, settings.steps, kind)
        walks[kind] = summarize_paths(down, pts, None if ctx is None else np.asarray(ctx)[pairs[:, 0]],
                                      sub=settings.sub, levels=settings.levels)
    rows: dict[str, Evidence] = {}
    n_diff = len(diff)
    for kind, g in (("linear", g_lin), ("slerp", g_slerp)):
        w = walks[kind]
        counts, js = w.counts[:n_diff], w.js_step[:n_diff]
        rho = per_path_spearman(counts, js)
        valid = rho[np.isfinite(rho)]
        details = {
            "n_paths": n_diff, "n_valid": int(valid.size), "steps": settings.steps,
            "exact": bool(w.exact), "n_evaluations": w.n_evaluations,
            "rho_per_path": rho.tolist(),
            "boundary_density": counts.mean(axis=0).tolist(),  # mean crossings per step
            "semantic_change": js.mean(axis=0).tolist(),  # mean JS (bits) per step
            "crossings_per_path": counts.sum(axis=1).tolist(),
            "js_per_path": js.sum(axis=1).tolist(),
        }
        if not w.exact:
            details.update(sub=settings.sub, levels=settings.levels)
        if valid.size < MIN_PATHS:
            rows[kind] = fail(kind, "track", f"only {valid.size} of {n_diff} paths cross a varying "
                              f"number of boundaries (need {MIN_PATHS})", details)
            continue
        idx = np.stack(bootstrap_resamples(valid.size, max(n_boot, N_BOOT_MIN), g))
        reps = valid[idx].mean(axis=1)
        lo, hi = percentile_ci(reps)
        details["boot_effect"] = encode_array(reps)
        details["boot_units"] = units_digest(np.flatnonzero(np.isfinite(rho)))
        rows[kind] = SPEC.evidence(
            f"{site}/{kind}", stat="track",
            effect=float(valid.mean()), ci=(float(lo), float(hi)), p=float(bootstrap_p_value(reps)),
            n=int(valid.size),
            notes=f"{note}; {valid.size}/{n_diff} paths with varying counts, "
                  f"{counts.sum(axis=1).mean():.1f} crossings per path",
            details=details,
        )
    lin = walks["linear"]
    tot = lin.counts.sum(axis=1).astype(float)
    t_diff, t_same = tot[:n_diff], tot[n_diff:]
    if len(t_same) < MIN_PATHS:
        rows["diff-vs-same"] = fail("diff-vs-same", "contrast",
                                    f"only {len(t_same)} same-label pairs (need {MIN_PATHS})")
        return rows
    delta, lo, hi, p = cliffs_delta_with_ci(t_diff, t_same, max(n_boot, N_BOOT_MIN), g_boot)
    length = np.linalg.norm(x[np.concatenate([diff, same])[:, 0]] - x[np.concatenate([diff, same])[:, 1]], axis=1)
    density = tot / np.maximum(length, 1e-12)
    rows["diff-vs-same"] = SPEC.evidence(
        f"{site}/diff-vs-same", stat="contrast",
        effect=float(delta), ci=(float(lo), float(hi)), p=float(p), n=int(tot.size),
        notes=f"{note}; median crossings {np.median(t_diff):.0f} (different labels) vs "
              f"{np.median(t_same):.0f} (same label)",
        details={
            "crossings_diff": t_diff.tolist(), "crossings_same": t_same.tolist(),
            "path_length_diff": length[:n_diff].tolist(), "path_length_same": length[n_diff:].tolist(),
            "median_density_diff": float(np.median(density[:n_diff])),
            "median_density_same": float(np.median(density[n_diff:])),
            "js_total_diff": float(lin.js_step[:n_diff].sum(axis=1).mean()),
            "js_total_same": float(lin.js_step[n_diff:].sum(axis=1).mean()),
            "exact": bool(lin.exact),
        },
    )
    return rows
