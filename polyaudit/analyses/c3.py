"""C3 analysis: directions have validity regions bounded by polytope boundaries.

Black, Sharkey et al. 2022 (prediction 3, sec. 5, Fig. 3): scaling an activation, c * h, leaves its
direction at the site unchanged, yet the network's output changes further down; the prediction is
that the change goes with the polytope boundaries crossed downstream. For inputs x and a
log-spaced grid of scales c (0.25 .. 4 by default, c = 1 the reference) h is replaced by c * h, and,
separately, moved along a feature direction, h + t v with v the difference between the mean site
activation of another (seeded, random) class and of x's own class, t in [-t_max, t_max] (t = 0 the
reference). Both grids reach out on two sides of the reference; every grid step runs away from the
reference.

Row effect (keys "scale", "direction"), version 3: per grid step k of input i, the boundaries
crossed on the step c_i[k] and the semantic change on it s_i[k] = JS (bits) between the outputs at
the step's ends; the frozen-code control s0_i[k] is the same JS with every downstream unit kept in
the state it has at the reference point (c = 1, t = 0; just past it towards each side): the
network with the grid's boundaries removed, exact, for piecewise-linear evaluators; for the
others, which have no boundary-free counterfactual, the model linearized at each step's start
(the step's end nearer the reference; `polyaudit.analyses.polylines`). Effect = mean over inputs of
Spearman(c_i, s_i) - Spearman(c_i, s0_i) (`polyaudit.analyses.alignment`): the control shares the
grid's geometry (step lengths grow with c; crossings and change both grow away from the reference;
a direction along which the output and some boundaries both vary with the input), so only what the
boundaries themselves do to the output counts, and boundaries that cannot change the output give
exactly 0. Predicted positive. CI: bootstrap over inputs; p: the bootstrap p of the same
replicates. Inputs whose per-step crossings are constant are left out. A PASS also needs the own
alignment, the mean per-input Spearman(c_i, s_i), positive (caveat otherwise): the output must
change where the boundaries are crossed.
Details: the cumulative statistic, the mean per-input Spearman(crossings since the reference, KL to
the reference), positive by construction (`cumulative_spearman`, `rho_per_input`); version 2's
own-versus-mismatched alignment (`mismatched_alignment`, `own_minus_mismatched`); the validity
radius (largest grid |t| with the top output unchanged out to it on both sides; censored at
t_max), KL and flip rate per grid point with the direction at the site unchanged (scale), and the
cross-sectional Spearman across inputs at each grid point.

`measure_grid` walks one grid and runs the test (a `GridWalk`); `direction_validity` turns the
walks into rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.analyses.alignment import (
    Tracking,
    alignment_matrix,
    contrast,
    tracking_test,
    varying,
)
from polyaudit.analyses.c2 import SAMPLED_UNITS, units_digest
from polyaudit.analyses.polylines import PathSummary, describe, sampling_details, summarize_paths
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.serial import encode_array
from polyaudit.stats import spearman_or_nan, spearman_rows
from polyaudit.verdict import Evidence

STATISTIC = "mean per-input [spearman(boundaries crossed, JS) - spearman(boundaries crossed, frozen-code JS)] per grid step"
ROWS: tuple[str, ...] = ("scale", "direction")
MIN_INPUTS = 8
N_BOOT_MIN = 1000  # resampling a mean is cheap
MIN_EFFECT = 0.1  # Spearman rho: Cohen's "small" correlation (docs/claims.md, C3)

SPEC = ClaimSpec(
    id="C3", version=3, title="directions have validity regions bounded by polytope boundaries",
    source="Black, Sharkey et al. 2022, Polytope Lens, prediction 3 (sec. 5, Fig. 3)",
    statistics=(Statistic("alignment", STATISTIC, "positive", units="Spearman rho", min_effect=MIN_EFFECT),),
    checks=(Check("direction-validity", "alignment", sites=("mlp_pre", "resid"), min_samples=2 * MIN_INPUTS),),
    plots=(PlotSpec("scales", reads=("grid", "mean_kl", "mean_crossings", "reference")),),
    modules=("polyaudit.analyses.c3", "polyaudit.analyses.alignment", "polyaudit.analyses.polylines",
             "polyaudit.interventions.lens", "polyaudit.interventions.evaluators"),
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
    units: int = SAMPLED_UNITS  # smooth codes: crossings counted on this many later units (see C2)

    def scales(self) -> np.ndarray:
        return np.geomspace(self.c_min, self.c_max, self.n_scales)

    def ts(self) -> np.ndarray:
        return np.linspace(-self.t_max, self.t_max, 2 * self.n_t + 1)


SETTINGS: dict[str, GridSettings] = {
    "quick": GridSettings(24, 9, 0.25, 4.0, 4, 2.0, 2, 1),
    "default": GridSettings(96, 13, 0.25, 4.0, 6, 2.0, 2, 1),
    "paper": GridSettings(256, 25, 0.25, 4.0, 12, 2.0, 4, 2, 4 * SAMPLED_UNITS),
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
    semantic change per step and relative to the reference, and the test against the control."""

    grid: np.ndarray  # [K] scales c, or moves t
    ref: int  # index of the reference point (c = 1, t = 0)
    walk: PathSummary
    cross: np.ndarray  # [P, K]: crossings between the reference and each point
    flip: np.ndarray | None  # bool [P, K]: the top output differs from the reference's (None: the
    # output is an embedding, which has no top output)
    rho: np.ndarray  # [P]: Spearman(crossings since the reference, KL to it) per input
    test: Tracking | str  # str: why there is no test (too few inputs with varying crossings)

    @property
    def n_valid(self) -> int:
        return 0 if isinstance(self.test, str) else self.test.n


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
                 settings: GridSettings, n_boot: int, rng: np.random.Generator) -> GridWalk:
    """Walk `points` [P, K, d] (steps away from the reference) and test the tracking of crossings
    against the frozen-code control over the inputs whose crossings vary (at least MIN_INPUTS)."""
    walk = summarize_paths(down, points, ctx, sub=settings.sub, levels=settings.levels, ref=ref, anchors=(ref,))
    cross = _cumulative(walk.counts, ref)
    keep = np.arange(cross.shape[1]) != ref  # the reference point itself is left out
    test = tracking_test(walk.counts, walk.js_step, walk.js_frozen, n_boot=max(n_boot, N_BOOT_MIN), rng=rng,
                         min_polylines=MIN_INPUTS)
    rho = spearman_rows(cross[:, keep].astype(float), walk.kl_ref[:, keep])  # NaN where either is constant
    flip = None if walk.top is None else walk.top != walk.top[:, ref:ref + 1]
    return GridWalk(grid=grid, ref=ref, walk=walk, cross=cross, flip=flip,
                    rho=rho, test=test)


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
    ctx: np.ndarray | None = None,
    notes: str = "",
) -> dict[str, Evidence]:
    """C3 rows for one site: `acts` [n, d] site activations with `labels` [n] (for the class-mean
    directions); `ctx` [n] the context each activation is written back into."""
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
        result = measure_grid(down, pts, ref, grid, c, settings=settings, n_boot=n_boot, rng=g)
        rows[key] = _grid_row(f"{site}/{key}", key, result, note=note, n=n)
    return rows


def _grid_details(key: str, r: GridWalk) -> dict[str, Any]:
    """The row's details before the test: the grid, mean crossings, KL and flips, radius, ..."""
    kl, flip, grid = r.walk.kl_ref, r.flip, r.grid
    details: dict[str, Any] = {
        "grid": grid.tolist(), "reference": float(grid[r.ref]), "n_inputs": int(r.cross.shape[0]),
        "n_valid": r.n_valid, "exact": bool(r.walk.exact), "n_evaluations": r.walk.n_evaluations,
        "n_control": r.walk.n_control,
        "rho_per_input": r.rho.tolist(),
        "cumulative_spearman": float(np.nanmean(r.rho)) if np.isfinite(r.rho).any() else None,
        "mean_crossings": r.cross.mean(axis=0).tolist(), "mean_kl": kl.mean(axis=0).tolist(),
        "flip_rate": None if flip is None else flip.mean(axis=0).tolist(),
        **({} if r.walk.space.kind == "distribution" else {"semantic_change_measure": r.walk.space.what}),
        "cross_sectional_spearman": _cross_sectional(r.cross, kl, r.ref),
        "semantic_change": r.walk.js_step.mean(axis=0).tolist(),
        "semantic_change_frozen": r.walk.js_frozen[0].mean(axis=0).tolist(),
        **_mismatched(r.walk.counts, r.walk.js_step),
        **sampling_details(r.walk)[0],
    }
    if key == "direction":
        details["validity_radius"] = None if flip is None else _radius(flip, grid, r.ref)
    else:
        details["direction_unchanged"] = {
            "kl_at_c_min": float(kl[:, 0].mean()), "kl_at_c_max": float(kl[:, -1].mean()),
            "flip_rate_c_min": None if flip is None else float(flip[:, 0].mean()),
            "flip_rate_c_max": None if flip is None else float(flip[:, -1].mean()),
        }
    return details


def _grid_row(row_site: str, key: str, r: GridWalk, *, note: str, n: int) -> Evidence:
    details = _grid_details(key, r)
    n_inputs, test = r.cross.shape[0], r.test
    if isinstance(test, str):
        return SPEC.failed(row_site, test.replace("polylines", "inputs"), n=n, details=details)
    details.update(own_alignment=test.own_mean, frozen_alignment=test.frozen_mean,
                   rho_step_per_input=test.own.tolist(), rho_frozen_per_input=test.frozen.tolist(),
                   boot_effect=encode_array(test.boot), boot_units=units_digest(np.flatnonzero(test.keep)))
    grid, flip = r.grid, r.flip
    extra = (f"change from the reference at c={grid[0]:g}: {details['direction_unchanged']['kl_at_c_min']:.3g}, "
             f"at c={grid[-1]:g}: {details['direction_unchanged']['kl_at_c_max']:.3g} (no top output: no flip rate)"
             if flip is None and key == "scale" else
             "no top output: no validity radius" if flip is None else
             f"flip rate at c={grid[0]:g}: {flip[:, 0].mean():.0%}, at c={grid[-1]:g}: {flip[:, -1].mean():.0%}"
             if key == "scale" else
             f"median validity radius t={details['validity_radius']['median']:.2g} "
             f"({details['validity_radius']['censored']:.0%} never flip by t={grid[-1]:g})")
    caveat = None
    if not test.own_mean > 0:
        caveat = (f"the output does not change where the boundaries are crossed: own alignment (mean per-input "
                  f"Spearman of crossings and change per step) {test.own_mean:.2f} is not positive")
    interval = test.interval
    return SPEC.evidence(
        row_site, effect=test.effect, ci=interval(0.95), p=test.p, n=test.n, interval=interval, caveat=caveat,
        replicates=test.boot,
        notes=(f"{note}; {test.n}/{n_inputs} inputs with varying counts; own alignment {test.own_mean:.2f} vs "
               f"{test.frozen_mean:.2f} with the codes frozen; {extra}"),
        details=details,
    )


def _mismatched(counts: np.ndarray, js_step: np.ndarray) -> dict[str, Any]:
    """Version 2's statistic, for the details: own alignment minus the mean alignment of an input's
    change with other inputs' crossings, over the inputs whose crossings and change both vary."""
    both = varying(counts) & varying(js_step)
    if int(both.sum()) < 3:
        return {"mismatched_alignment": None, "own_minus_mismatched": None}
    effect, _, mismatch = contrast(alignment_matrix(counts[both], js_step[both]))
    return {"mismatched_alignment": mismatch, "own_minus_mismatched": effect}


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
