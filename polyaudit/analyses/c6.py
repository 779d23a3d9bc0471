"""C6 analysis: the smoothness of random projections tracks the eigenspectrum exponent alpha.

Marshall & Kirchner 2024 (sec. 5, Fig. 4), after Stringer et al. 2019: the slower a code's
eigenspectrum decays (alpha nearer 0), the more variance it spends on directions that change fast
along a smooth stimulus, so random projections of its trajectory are rougher: their ACTION (half the
mean sum of squared successive differences, `polyaudit.measures.action`) is larger. PREDICTED
POSITIVE.

The theory links the spectrum and the smoothness of the responses to ONE stimulus ensemble, so
alpha is fitted on the stimulus ensemble itself: every frame of every loop, centred on its loop's
mean (`measures.action.loop_frames`, the within-loop covariance whose trace the relative action
divides by), over one rank range shared by the layers (`coding.layer_alphas`). The probe's alpha is
reported beside it (`details.probe_alphas`), secondary. The action compared with alpha is the
RELATIVE action (per unit of the trajectory's own projected spread, on N_PROJ directions
r ~ N(0, I/m)): alpha is scale-free, and a raw action would rank layers by their activation norm.

Both drift with depth in real models, so the effect is Spearman of their FIRST DIFFERENCES across
adjacent layers, the change in alpha against the change in log relative action
(`depth.difference_trend`): two profiles that merely share a smooth trend, or are independent
random walks, are not called related. p: exact permutation (of the differences and of the
layers, the larger p), interval: Fisher's z on the L - 1 pairs. With L layers the smallest p is
2 / (L - 1)!: 5 layers or fewer cannot reach 0.05 and the row says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from polyaudit.analyses.coding import LayerAlphas, layer_alphas
from polyaudit.analyses.depth import DifferenceTrend, difference_trend, too_few_pairs
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.measures.action import (
    expected_action,
    loop_frames,
    projection_energies,
    projection_matrix,
)
from polyaudit.stats import spearman_or_nan
from polyaudit.threads import blas_threads, small_width
from polyaudit.verdict import Evidence, Prediction

STATISTIC = "spearman(diff alpha, diff log relative action) over adjacent layers"
PREDICTED: Prediction = "positive"
N_PROJ = 1000
MIN_LAYERS = 3
MIN_SAMPLES = 50
MIN_RHO = 0.3  # |rho| below 0.3: the ranks share under a tenth of their variance
ALPHA_RESOLUTION = 1e-3  # float16 activation storage moves alpha by ~1e-4; its sampling error is ~1e-2
ACTION_RESOLUTION = 1e-9  # log relative actions closer than this are one value (layers that are scaled copies)
SITES = ("resid", "mlp_pre")

SPEC = ClaimSpec(
    id="C6", version=3, title="the smoothness of random projections tracks alpha",
    source="Marshall & Kirchner 2024, coding theory of polysemanticity (sec. 5, Fig. 4)",
    statistics=(Statistic("action-alpha", STATISTIC, PREDICTED, units="Spearman rho", min_effect=MIN_RHO),),
    checks=(Check("action-alpha", "action-alpha", sites=SITES, min_samples=MIN_SAMPLES),),
    plots=(PlotSpec("action", reads=("layers",)),),
    modules=("polyaudit.analyses.c6", "polyaudit.interventions.stimuli"),
)
CLAIM, VERSION = SPEC.id, SPEC.version


def layer_energies(
    trajs: Sequence[np.ndarray], n_proj: int, rng: np.random.Generator, closed: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(energy, spread) [K, n_proj] per layer; layers of equal width share the same directions, so
    their actions are compared on the same projections."""
    directions: dict[int, np.ndarray] = {}
    out = []
    for traj in trajs:
        m = int(traj.shape[-1])
        if m not in directions:
            directions[m] = projection_matrix(m, n_proj, rng)
        out.append(projection_energies(traj, directions[m], closed))
    return out


@dataclass(frozen=True)
class LayerActions:
    """alpha of each fitted layer on the stimulus ensemble and the action of its trajectory on random
    projections."""

    fits: LayerAlphas  # on the stimulus ensemble
    trajs: list[np.ndarray]  # the fitted layers' trajectories [K loops, T frames, m units]
    raw: np.ndarray  # [len(kept)] action: half the mean energy
    spread: np.ndarray  # [len(kept)] mean projected spread
    n_loops: int

    @property
    def relative(self) -> np.ndarray:
        return self.raw / self.spread


def ensemble_alphas(trajs: Sequence[np.ndarray], rank_bounds: Sequence[int | None] | None = None,
                    ranks: tuple[int, int] | None = None) -> LayerAlphas:
    """alpha of every layer's stimulus ensemble (`loop_frames` of its trajectory), one rank range."""
    frames = [SimpleNamespace(samples=loop_frames(t), groups=None) for t in trajs]
    return layer_alphas(frames, ranks=ranks, rank_bounds=rank_bounds)


def measure_actions(trajs: Sequence[np.ndarray], *, n_proj: int, closed: bool, rng: np.random.Generator,
                    ranks: tuple[int, int] | None = None,
                    rank_bounds: Sequence[int | None] | None = None) -> LayerActions:
    """Ensemble alphas and actions of every layer that resolves enough eigenvalues for a fit."""
    fits = ensemble_alphas(trajs, rank_bounds, ranks)
    kept = [trajs[i] for i in fits.kept]
    energies = layer_energies(kept, n_proj, rng, closed)
    return LayerActions(fits=fits, trajs=kept, raw=np.array([0.5 * e.mean() for e, _ in energies]),
                        spread=np.array([sp.mean() for _, sp in energies]),
                        n_loops=int(trajs[0].shape[0]) if np.ndim(trajs[0]) == 3 else 1)


def probe_alphas(layers: Sequence[Any], rank_bounds: Sequence[int | None] | None) -> dict[str, Any]:
    """The probe's alphas (secondary, for details), or why they could not be fitted."""
    try:
        fits = layer_alphas(layers, rank_bounds=rank_bounds)
    except PolyauditError as e:
        return {"probe_alphas": None, "probe_alpha_error": str(e)}
    if not fits.kept:
        return {"probe_alphas": None, "probe_alpha_error": fits.excluded[0]["reason"]}
    return {"probe_alphas": {str(i): float(a) for i, a in zip(fits.kept, fits.alphas, strict=True)},
            "probe_ranks": list(fits.ranks), "probe_n_effective": fits.n_effective}


# ---- rows -------------------------------------------------------------------------------------


def action_alpha(
    layers: Sequence[Any],
    trajs: Sequence[np.ndarray],
    *,
    site: str,
    rng: np.random.Generator,
    n_proj: int = N_PROJ,
    closed: bool = True,
    ranks: tuple[int, int] | None = None,
    rank_bounds: Sequence[int | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Evidence:
    """`layers`: per-layer SiteData of the probe (shallow to deep; their alphas are secondary);
    `trajs`: per-layer stimulus trajectories [K loops, T frames, m units] at the same sites;
    `rank_bounds`: the architecture's bound on each layer's rank (`Adapter.rank_bound`), or None."""
    if len(layers) < MIN_LAYERS:
        return SPEC.skipped(site, f"needs at least {MIN_LAYERS} layers to "
                                  f"correlate across layers; the model has {len(layers)}")
    if len(trajs) != len(layers):
        raise PolyauditError(f"{len(trajs)} trajectories for {len(layers)} layers", site=site)
    for i, (data, traj) in enumerate(zip(layers, trajs, strict=True)):
        if data.n_nonfinite or not np.all(np.isfinite(traj)):
            return SPEC.failed(site, f"activations at layer {i} contain NaN/inf values")
    width = max((int(np.shape(t)[-1]) for t in trajs), default=0)
    with blas_threads(1, enabled=small_width(width)):
        try:
            acts = measure_actions(trajs, n_proj=n_proj, closed=closed, rng=rng, ranks=ranks, rank_bounds=rank_bounds)
        except PolyauditError as e:
            return SPEC.failed(site, str(e), n=len(layers))
        details = _layer_details(acts, closed=closed, n_proj=n_proj, frames=int(trajs[0].shape[1]), extra=extra)
        details.update(probe_alphas(layers, rank_bounds))
    return _row(acts, details, site=site, rng=rng)


def _row(acts: LayerActions, details: dict[str, Any], *, site: str, rng: np.random.Generator) -> Evidence:
    kept = acts.fits.kept
    if len(kept) < MIN_LAYERS:  # a degenerate spectrum is a finding about the model, not an error
        low = ", ".join(f"{e['layer']} ({e['effective_dims']} dimensions)" for e in acts.fits.excluded)
        return SPEC.skipped(site, f"the responses to the stimulus span too few dimensions for a power-law fit "
                                  f"at layer(s) {low}: {len(kept)} layer(s) remain, {MIN_LAYERS} are needed")
    if np.any(acts.spread <= 0):
        return SPEC.failed(site, "the stimulus does not move the activations "
                                 f"at layer {kept[int(np.argmin(acts.spread))]}", n=len(kept), details=details)
    log_rel = np.log(acts.relative)
    tr = difference_trend(acts.fits.alphas, log_rel, rng, x_resolution=ALPHA_RESOLUTION,
                          y_resolution=ACTION_RESOLUTION)
    if tr is None:
        return SPEC.undetermined(site, "alpha or the action changes by the same amount between every pair of adjacent "
                                 "layers: Spearman is undefined", n=len(kept), details=details)
    details.update(p_differences=tr.p_differences, p_levels=tr.p_levels, orderings=list(tr.orderings),
                   exact=list(tr.exact), rho_levels=_levels_rho(acts))
    lo, hi = tr.interval(0.95)
    return SPEC.evidence(site, effect=tr.rho, ci=(lo, hi), p=tr.p, n=tr.n_pairs, interval=tr.interval,
                         notes=_notes(acts, tr, frames=details["frames"], n_proj=details["n_proj"]), details=details)


def _levels_rho(acts: LayerActions) -> float:
    return spearman_or_nan(acts.relative, acts.fits.alphas)


def _layer_details(acts: LayerActions, *, closed: bool, n_proj: int, frames: int,
                   extra: Mapping[str, Any] | None) -> dict[str, Any]:
    fits, raw, spread = acts.fits, acts.raw, acts.spread
    per_layer = [{"layer": i, "alpha": float(fits.alphas[j]), "r2": float(fits.r2[j]), "action": float(raw[j]),
                  "expected_action": expected_action(acts.trajs[j], closed),
                  "relative_action": float(raw[j] / spread[j]) if spread[j] > 0 else None,
                  "width": int(acts.trajs[j].shape[-1])} for j, i in enumerate(fits.kept)]
    return {
        "layers": per_layer, "alphas": fits.alphas.tolist(), "actions": raw.tolist(), "n_proj": n_proj,
        "n_loops": acts.n_loops, "frames": frames, "ranks": list(fits.ranks), "alpha_on": "stimulus ensemble",
        "relative_actions": (raw / np.where(spread > 0, spread, np.nan)).tolist(),
        "excluded_layers": fits.excluded, **dict(extra or {})}


def _notes(acts: LayerActions, tr: DifferenceTrend, *, frames: int, n_proj: int) -> str:
    fits = acts.fits
    excluded = f"; layers {', '.join(str(e['layer']) for e in fits.excluded)} excluded (too few eigenvalues)" \
        if fits.excluded else ""
    return (f"alpha on the stimulus ensemble ({acts.n_loops} loops x {frames} frames, within-loop, fit ranks "
            f"{fits.ranks[0]}-{fits.ranks[1]}, min R^2 {float(np.min(fits.r2)):.2f}); relative action on {n_proj} random projections; Spearman of the "
            f"changes between {tr.n_pairs} adjacent layer pairs, p = max(differences {tr.p_differences:.3g}, "
            f"levels {tr.p_levels:.3g}) by exact permutation, Fisher-z interval (Bonett-Wright variance){excluded}{too_few_pairs(tr.n_pairs)}")
