"""C3 analysis: directions have validity regions bounded by polytope boundaries.

Black, Sharkey et al. 2022 (prediction 3, sec. 5, Fig. 3): scaling an activation, c * h, leaves its
direction at the site unchanged, yet the network's output changes further down; the prediction is
that the change goes with the polytope boundaries crossed downstream. For inputs x and a
log-spaced grid of scales c (0.25 .. 4 by default, c = 1 the reference) h is replaced by c * h, and,
separately, moved along a feature direction, h + t v with v the difference between the mean site
activation of another (seeded, random) class and of x's own class, t in [-t_max, t_max] (t = 0 the
reference). Both grids reach out on two sides of the reference, so the two sides can disagree
(crossings and semantic change both grow away from the reference on each side). At each point:
  boundaries crossed  downstream crossings between the reference and the point along the ray
                      (exact for ReLU nets, see `polyaudit.analyses.polylines`);
  semantic change     KL(p_ref || p_point) in bits, and whether the top output flips.
Row effect (keys "scale", "direction"): own alignment versus mismatch
(`polyaudit.analyses.alignment`). Per grid step k of input i: the boundaries crossed on the step,
c_i[k], and the semantic change on it, s_i[k] = JS (bits) between the outputs at the step's ends.
R[i, j] = Spearman over the steps of (c_j, s_i); effect = mean_i R[i, i] - mean_{i != j} R[i, j]:
does an input's semantic change follow ITS OWN boundaries better than other inputs' boundaries,
which share the grid's geometry (step lengths grow with c; both quantities grow away from the
reference) but not the input's polytopes? Predicted positive. p: permutation test of which input's
crossing pattern goes with which input's change (at least `alignment.N_PERM_MIN` pairings, seeded),
two-sided; CI: bootstrap over inputs. Inputs whose per-step crossings or change are constant are
left out.
The cumulative statistic, the mean per-input Spearman(crossings since the reference, KL to the
reference), is positive by construction (both grow away from c = 1 on each side); it stays in
`details` (`cumulative_spearman`, `rho_per_input`) with the plain per-input step-wise Spearman
(`stepwise_spearman`, the "own" term). Why it is not the effect: docs/claims.md, C3 versions.
Details: the validity radius (largest grid |t| with the top output unchanged out to it on both
sides; censored at t_max), KL and flip rate per grid point with the direction at the site unchanged
(scale), and the cross-sectional Spearman across inputs at each grid point.

`measure_grid` walks one grid and runs the test (a `GridWalk`); `direction_validity` turns the
walks into rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.alignment import AlignmentTest, alignment_test, varying
from polyaudit.analyses.c2 import per_path_spearman, units_digest
from polyaudit.analyses.polylines import PathSummary, describe, summarize_paths
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.serial import encode_array
from polyaudit.stats import spearman_or_nan
from polyaudit.verdict import Evidence

STATISTIC = "own - mismatched spearman(boundaries crossed, JS) per grid step"
ROWS: tuple[str, ...] = ("scale", "direction")
MIN_INPUTS = 8
N_BOOT_MIN = 1000  # reweighting the alignment matrix is cheap

SPEC = ClaimSpec(
    id="C3", version=2, title="directions have validity regions bounded by polytope boundaries",
    source="Black, Sharkey et al. 2022, Polytope Lens, prediction 3 (sec. 5, Fig. 3)",
    statistics=(Statistic("alignment", STATISTIC, "positive", units="Spearman rho"),),
    checks=(Check("direction-validity", "alignment", sites=("mlp_pre", "resid"), min_samples=2 * MIN_INPUTS),),
    plots=(PlotSpec("scales", reads=("grid", "mean_kl", "mean_crossings", "reference")),),
    modules=("polyaudit.analyses.c3", "polyaudit.interventions.lens", "polyaudit.interventions.evaluators"),
)
CLAIM, VERSION = SPEC.id, SPEC.version


@dataclass(frozen=True)
class GridSettings:
    n_inputs: int
    n_scales: int  # odd: log-spaced from c_min to c_max with 1 in the middle
    c_min: float
    c_max: float
    n_t: int  # direction grid: t = -t_max .. t_max in 2 n_t steps, 0 in the middle
    t_max: float
    sub: int
    levels: int

    def scales(self) -> np.ndarray:
        return np.geomspace(self.c_min, self.c_max, self.n_scales)

    def ts(self) -> np.ndarray:
        return np.linspace(-self.t_max, self.t_max, 2 * self.n_t + 1)


SETTINGS: dict[str, GridSettings] = {
    "quick": GridSettings(24, 9, 0.25, 4.0, 4, 2.0, 2, 1),
    "default": GridSettings(96, 13, 0.25, 4.0, 6, 2.0, 2, 1),
    "paper": GridSettings(256, 25, 0.25, 4.0, 12, 2.0, 4, 2),
}


def settings_for(profile_name: str) -> GridSettings:
    return SETTINGS.get(profile_name, SETTINGS["default"])


def class_directions(acts: np.ndarray, labels: np.ndarray, chosen: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(v [m, d], target class [m]): mean(target class) - mean(own class) for each chosen sample,
    the target drawn uniformly from the other classes."""
    classes = np.unique(labels)
    means = np.stack([acts[labels == c].mean(axis=0) for c in classes])
    own = np.searchsorted(classes, labels[chosen])
    shift = rng.integers(1, classes.size, size=chosen.size)
    target = (own + shift) % classes.size
    return means[target] - means[own], classes[target]


def _cumulative(counts: np.ndarray, ref: int) -> np.ndarray:
    """Crossings between the reference point and each grid point, [P, K] (0 at the reference)."""
    out = np.zeros((counts.shape[0], counts.shape[1] + 1), dtype=np.int64)
    right = np.cumsum(counts[:, ref:], axis=1)
    out[:, ref + 1:] = right
    if ref > 0:
        left = np.cumsum(counts[:, :ref][:, ::-1], axis=1)[:, ::-1]
        out[:, :ref] = left
    return out


def _cross_sectional(cross: np.ndarray, kl: np.ndarray, ref: int) -> list[float | None]:
    """Spearman across inputs of (crossings, KL) at each grid point (None at the reference and
    where it is undefined)."""
    out: list[float | None] = []
    for k in range(cross.shape[1]):
        rho = float("nan") if k == ref else spearman_or_nan(cross[:, k].astype(float), kl[:, k])
        out.append(None if np.isnan(rho) else rho)
    return out


# ---- measure ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridWalk:
    """One grid (scales or moves along a direction) walked from every chosen input: crossings and
    semantic change per step and relative to the reference, and the alignment test."""

    grid: np.ndarray  # [K] scales c, or moves t
    ref: int  # index of the reference point (c = 1, t = 0)
    walk: PathSummary
    cross: np.ndarray  # [P, K]: crossings between the reference and each point
    flip: np.ndarray  # bool [P, K]: the top output differs from the reference's
    rho: np.ndarray  # [P]: Spearman(crossings since the reference, KL to it) per input
    keep: np.ndarray  # bool [P]: inputs whose per-step crossings and change both vary
    test: AlignmentTest | str | None  # None: too few inputs kept; str: why the test failed

    @property
    def n_valid(self) -> int:
        return int(self.keep.sum())


def grids(x: np.ndarray, y: np.ndarray, chosen: np.ndarray, settings: GridSettings,
          rng: np.random.Generator) -> dict[str, tuple[np.ndarray, int, np.ndarray]]:
    """{key: (points [P, K, d], reference index, grid [K])} for the chosen inputs: the scale grid,
    and the direction grid when there are two labels or more."""
    h = x[chosen]
    scales = settings.scales()
    ref_scale = int(np.argmin(np.abs(np.log(scales))))
    out = {"scale": (scales[None, :, None] * h[:, None, :], ref_scale, scales)}
    if np.unique(y).size >= 2:
        v, _ = class_directions(x, y, chosen, rng)
        ts = settings.ts()
        out["direction"] = (h[:, None, :] + ts[None, :, None] * v[:, None, :], settings.n_t, ts)
    return out


def measure_grid(down: Any, points: np.ndarray, ref: int, grid: np.ndarray, ctx: np.ndarray | None, *,
                 settings: GridSettings, n_boot: int, n_perm: int, rng: np.random.Generator) -> GridWalk:
    """Walk `points` [P, K, d] and test own versus mismatched alignment over the inputs whose
    crossings and change vary (at least MIN_INPUTS of them)."""
    walk = summarize_paths(down, points, ctx, sub=settings.sub, levels=settings.levels, ref=ref)
    cross = _cumulative(walk.counts, ref)
    keep = np.arange(cross.shape[1]) != ref  # the reference point itself is left out
    keep_inputs = varying(walk.counts) & varying(walk.js_step)
    test: AlignmentTest | str | None = None
    if int(keep_inputs.sum()) >= MIN_INPUTS:
        g_boot, g_perm = rng.spawn(2)
        try:
            test = alignment_test(walk.counts[keep_inputs], walk.js_step[keep_inputs],
                                  n_boot=max(n_boot, N_BOOT_MIN), n_perm=n_perm, rng_boot=g_boot, rng_perm=g_perm)
        except PolyauditError as e:
            test = str(e)
    return GridWalk(grid=grid, ref=ref, walk=walk, cross=cross, flip=walk.top != walk.top[:, ref:ref + 1],
                    rho=per_path_spearman(cross[:, keep], walk.kl_ref[:, keep]), keep=keep_inputs, test=test)


# ---- rows -------------------------------------------------------------------------------------


def direction_validity(
    down: Any,
    acts: np.ndarray,
    labels: np.ndarray,
    *,
    site: str,
    rng: np.random.Generator,
    settings: GridSettings,
    n_boot: int,
    n_perm: int = 0,
    ctx: np.ndarray | None = None,
    notes: str = "",
) -> dict[str, Evidence]:
    """C3 rows for one site: `acts` [n, d] site activations with `labels` [n] (for the class-mean
    directions); `ctx` [n] the context each activation is written back into. `n_perm`: pairings
    of the permutation test (at least `alignment.N_PERM_MIN`)."""
    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels)
    n = x.shape[0]
    note = "; ".join(s for s in (notes, describe(down)) if s)
    if not np.all(np.isfinite(x)):
        return {k: SPEC.failed(f"{site}/{k}", "site activations contain NaN/inf", n=n) for k in ROWS}
    g_pick, g_dir, g_scale, g_move = rng.spawn(4)
    chosen = np.sort(g_pick.choice(n, size=min(settings.n_inputs, n), replace=False))
    c = None if ctx is None else np.asarray(ctx)[chosen]
    points = grids(x, y, chosen, settings, g_dir)
    rows: dict[str, Evidence] = {}
    for key, g in (("scale", g_scale), ("direction", g_move)):
        if key not in points:
            rows[key] = SPEC.failed(f"{site}/{key}", "class-mean directions need at least two labels", n=n)
            continue
        pts, ref, grid = points[key]
        result = measure_grid(down, pts, ref, grid, c, settings=settings, n_boot=n_boot, n_perm=n_perm, rng=g)
        rows[key] = _grid_row(f"{site}/{key}", key, result, note=note, n=n)
    return rows


def _grid_details(key: str, r: GridWalk) -> dict[str, Any]:
    """The row's details before the test: the grid, mean crossings, KL and flips, radius, ..."""
    kl, flip, grid = r.walk.kl_ref, r.flip, r.grid
    details: dict[str, Any] = {
        "grid": grid.tolist(), "reference": float(grid[r.ref]), "n_inputs": int(r.cross.shape[0]),
        "n_valid": r.n_valid, "exact": bool(r.walk.exact), "n_evaluations": r.walk.n_evaluations,
        "rho_per_input": r.rho.tolist(),
        "cumulative_spearman": float(np.nanmean(r.rho)) if np.isfinite(r.rho).any() else None,
        "mean_crossings": r.cross.mean(axis=0).tolist(), "mean_kl": kl.mean(axis=0).tolist(),
        "flip_rate": flip.mean(axis=0).tolist(),
        "cross_sectional_spearman": _cross_sectional(r.cross, kl, r.ref),
        "stepwise_spearman": _stepwise(r.walk.counts, r.walk.js_step),
    }
    if key == "direction":
        details["validity_radius"] = _radius(flip, grid, r.ref)
    else:
        details["direction_unchanged"] = {
            "kl_at_c_min": float(kl[:, 0].mean()), "kl_at_c_max": float(kl[:, -1].mean()),
            "flip_rate_c_min": float(flip[:, 0].mean()), "flip_rate_c_max": float(flip[:, -1].mean()),
        }
    return details


def _grid_row(row_site: str, key: str, r: GridWalk, *, note: str, n: int) -> Evidence:
    details = _grid_details(key, r)
    n_inputs, n_valid, test = r.cross.shape[0], r.n_valid, r.test
    if test is None:
        return SPEC.failed(row_site, f"only {n_valid} of {n_inputs} inputs cross a varying number of "
                                     f"boundaries per step with a varying output (need {MIN_INPUTS})",
                           n=n, details=details)
    if isinstance(test, str):
        return SPEC.failed(row_site, test, n=n, details=details)
    lo, hi = test.ci
    details.update(own_alignment=test.own, mismatched_alignment=test.mismatch, n_perm=test.n_perm,
                   boot_effect=encode_array(test.boot), boot_units=units_digest(np.flatnonzero(r.keep)))
    grid, flip = r.grid, r.flip
    extra = (f"flip rate at c={grid[0]:g}: {flip[:, 0].mean():.0%}, at c={grid[-1]:g}: {flip[:, -1].mean():.0%}"
             if key == "scale" else
             f"median validity radius t={details['validity_radius']['median']:.2g} "
             f"({details['validity_radius']['censored']:.0%} never flip by t={grid[-1]:g})")
    return SPEC.evidence(
        row_site, effect=test.effect, ci=(float(lo), float(hi)), p=test.p, n=n_valid,
        notes=(f"{note}; {n_valid}/{n_inputs} inputs with varying counts; own alignment "
               f"{test.own:.2f} vs mismatched {test.mismatch:.2f}; {extra}"),
        details=details,
    )


def _stepwise(counts: np.ndarray, js_step: np.ndarray) -> float | None:
    """Mean per-input Spearman of crossings per grid step vs JS per step (C2's statistic on these
    rays): does the output change on the steps that cross boundaries, not just further out?"""
    rho = per_path_spearman(counts, js_step)
    return float(np.nanmean(rho)) if np.isfinite(rho).any() else None


def _radius(flip: np.ndarray, grid: np.ndarray, ref: int) -> dict[str, Any]:
    """Per input, the largest grid |t| with the top output unchanged at every grid point at most
    that far from the reference, on both sides (t_max when it never flips: censored)."""
    dist = np.abs(grid - grid[ref])
    levels = np.unique(dist)
    flipped_at = np.array([[flip[i, dist == lv].any() for lv in levels] for i in range(flip.shape[0])])
    first = np.where(flipped_at.any(axis=1), flipped_at.argmax(axis=1), levels.size)
    censored = first >= levels.size
    radius = np.where(censored, levels[-1], levels[np.maximum(first - 1, 0)])
    return {
        "per_input": radius.tolist(), "censored_per_input": censored.tolist(),
        "median": float(np.median(radius)), "quartiles": np.quantile(radius, [0.25, 0.75]).tolist(),
        "censored": float(censored.mean()),
    }
