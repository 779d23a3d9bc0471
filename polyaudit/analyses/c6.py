"""C6 analysis: the smoothness of random projections tracks the eigenspectrum exponent alpha.

Marshall & Kirchner 2024 (sec. 5, Fig. 4), after Stringer et al. 2019: the slower a code's
eigenspectrum decays (alpha nearer 0), the more variance it spends on directions that change fast
along a smooth stimulus, so random projections of its trajectory are rougher: their ACTION (half the
mean sum of squared successive differences, `polyaudit.measures.action`) is larger. PREDICTED
POSITIVE: Spearman(action, alpha) across layers > 0.

Per layer: alpha from the probe's activations (as in C4; Huber fit over the default rank range)
and the action of the stimulus trajectory projected on `N_PROJ` directions r ~ N(0, I/m). The
action compared with alpha is the RELATIVE action (per unit of the trajectory's own projected
spread): alpha is scale-free, and the theory compares codes of equal variance, so a raw action
would rank layers by their activation norm (e.g. a residual stream that grows with depth) rather
than by the shape of their spectrum. The raw action, its exact expectation 1/2 tr(Sigma), and the
relative action are all in `details`.

CI: paired bootstrap — each replicate resamples the probe samples (alpha of every layer), the
stimulus loops and the projections (action of every layer), then correlates across layers. This
CI is conditional on the model's layers: it says how well THESE layers' ranking is measured.

p: the layers are the units of the correlation, so the evidence that action tracks
alpha is also tested at the layer level: a permutation test of Spearman(relative action, alpha)
over the orderings of the layers (all L! of them for L <= EXACT_LAYERS, else N_LAYER_PERM seeded
shuffles), two-sided. The row's p is max(bootstrap p, layer-permutation p), valid under both
sources of randomness (measurement noise within layers, and which layers a model happens to
have), before the Holm/BH adjustment; `verdict.decide` needs the adjusted p below alpha for a PASS
(or a FAIL), so a tight CI alone cannot pass. With L layers the smallest two-sided
layer-permutation p is 2 / L!: 4 layers (2/24 = 0.083) can never reach significance and the row is
INCONCLUSIVE, saying so in its notes. Why the bootstrap p alone is not enough: docs/claims.md,
C6 versions.

`measure_actions` and `measure_trend` measure (actions per layer; bootstrap replicates and both
p-values); `action_alpha` turns them into the row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from polyaudit.analyses.coding import LayerAlphas, layer_alphas
from polyaudit.claimspec import Check, ClaimSpec, PlotSpec, Statistic
from polyaudit.errors import PolyauditError
from polyaudit.measures.action import expected_action, projection_energies, projection_matrix
from polyaudit.stats import bootstrap_p_value, percentile_ci, snap_ties, spearman_or_nan
from polyaudit.threads import blas_threads, small_width
from polyaudit.verdict import Evidence, Prediction

STATISTIC = "spearman(action, alpha)"
PREDICTED: Prediction = "positive"
N_PROJ = 1000
MIN_LAYERS = 3
MIN_SAMPLES = 50
EXACT_LAYERS = 8  # up to 8! = 40320 orderings: enumerate them all
N_LAYER_PERM = 9999  # seeded shuffles beyond that
ALPHA = 0.05  # the verdict's level (verdict.decide's default), for the note on too few layers
ALPHA_RESOLUTION = 1e-3  # float16 activation storage moves alpha by ~1e-4; its sampling error is ~1e-2
SITES = ("resid", "mlp_pre")

SPEC = ClaimSpec(
    id="C6", version=2, title="the smoothness of random projections tracks alpha",
    source="Marshall & Kirchner 2024, coding theory of polysemanticity (sec. 5, Fig. 4)",
    statistics=(Statistic("action-alpha", STATISTIC, PREDICTED, units="Spearman rho"),),
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


def _snapped(action: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values closer than their resolution made ties (layers that are scaled copies have ONE
    alpha): actions within 1e-9 relative, alphas within ALPHA_RESOLUTION (float16 storage of the
    activations moves an alpha by ~1e-4; its sampling error is ~1e-2)."""
    x = snap_ties(np.asarray(action, dtype=float), 1e-9 * float(np.max(np.abs(action))))
    y = snap_ties(np.asarray(alpha, dtype=float), ALPHA_RESOLUTION)
    return x, y


def _spearman(action: np.ndarray, alpha: np.ndarray) -> float:
    """Spearman(action, alpha) of the snapped values (`_snapped`), NaN where undefined (a constant
    or non-finite input, e.g. in one bootstrap replicate)."""
    if not (np.all(np.isfinite(action)) and np.all(np.isfinite(alpha))):
        return float("nan")
    return spearman_or_nan(*_snapped(action, alpha))


def layer_permutation_p(action: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> tuple[float, int, bool]:
    """(two-sided p, orderings used, exact) of Spearman(action, alpha) against the layers' orderings:
    exact over all L! orderings for L <= EXACT_LAYERS (#{|rho_perm| >= |rho|} / L!, the identity
    included), else N_LAYER_PERM seeded shuffles with the +1 correction."""
    rx, ry = (rankdata(v) for v in _snapped(action, alpha))
    zx, zy = rx - rx.mean(), ry - ry.mean()
    zx, zy = zx / np.linalg.norm(zx), zy / np.linalg.norm(zy)
    observed = abs(float(zx @ zy))
    n = zx.size
    exact = n <= EXACT_LAYERS
    if exact:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    else:
        perms = rng.permuted(np.tile(np.arange(n), (N_LAYER_PERM, 1)), axis=1)
    null = np.abs(zx[perms] @ zy)
    hits = int(np.count_nonzero(null >= observed - 1e-12))
    if exact:
        return hits / math.factorial(n), perms.shape[0], True
    return (hits + 1) / (perms.shape[0] + 1), perms.shape[0], False


def min_layer_p(n_layers: int) -> float:
    """The smallest two-sided layer-permutation p that L layers can give: 2 / L! (exact test)."""
    return 2.0 / math.factorial(n_layers) if n_layers <= EXACT_LAYERS else 1.0 / (N_LAYER_PERM + 1)


# ---- measure ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerActions:
    """alpha of each fitted layer (with paired bootstrap replicates) and the energies of its
    stimulus trajectory on random projections."""

    fits: LayerAlphas
    trajs: list[np.ndarray]  # the fitted layers' trajectories [K loops, T frames, m units]
    energies: list[tuple[np.ndarray, np.ndarray]]  # (energy, spread) [K, n_proj] per fitted layer
    raw: np.ndarray  # [len(kept)] action: half the mean energy
    spread: np.ndarray  # [len(kept)] mean projected spread

    @property
    def n_loops(self) -> int:
        return int(self.energies[0][0].shape[0])


@dataclass(frozen=True)
class ActionTrend:
    """Spearman(relative action, alpha) across layers: paired bootstrap and layer permutations."""

    replicates: np.ndarray  # [n_boot]
    ci: tuple[float, float]
    p_boot: float
    p_layers: float
    n_orderings: int
    exact: bool

    @property
    def p(self) -> float:
        return max(self.p_boot, self.p_layers)


def measure_actions(fits: LayerAlphas, trajs: Sequence[np.ndarray], *, n_proj: int, closed: bool,
                    rng: np.random.Generator) -> LayerActions:
    """The actions of the fitted layers' stimulus trajectories (`fits` from `coding.layer_alphas`)."""
    kept_trajs = [trajs[i] for i in fits.kept]
    energies = layer_energies(kept_trajs, n_proj, rng, closed)
    return LayerActions(fits=fits, trajs=kept_trajs, energies=energies,
                        raw=np.array([0.5 * energy.mean() for energy, _ in energies]),
                        spread=np.array([sp.mean() for _, sp in energies]))


def measure_trend(acts: LayerActions, rel: np.ndarray, *, n_boot: int, n_proj: int,
                  rng: np.random.Generator) -> ActionTrend:
    """Paired bootstrap (stimulus loops, projections and, through the fits, probe samples) and the
    layer-permutation test. PolyauditError when over MAX_UNDEFINED of the replicates are undefined."""
    k = acts.n_loops
    loops = rng.integers(0, k, size=(n_boot, k))
    projs = rng.integers(0, n_proj, size=(n_boot, n_proj))
    boot_rel = np.empty((len(acts.energies), n_boot))
    for j, (energy, spread_j) in enumerate(acts.energies):
        for b in range(n_boot):
            idx = np.ix_(loops[b], projs[b])
            boot_rel[j, b] = 0.5 * energy[idx].mean() / spread_j[idx].mean()
    boot = np.array([_spearman(boot_rel[:, b], acts.fits.boot[:, b]) for b in range(n_boot)])
    lo, hi = percentile_ci(boot)  # error when over 10% of replicates are undefined
    p_boot = bootstrap_p_value(boot)
    p_layers, n_orderings, exact = layer_permutation_p(rel, acts.fits.alphas, rng)
    return ActionTrend(replicates=boot, ci=(lo, hi), p_boot=p_boot, p_layers=p_layers,
                       n_orderings=n_orderings, exact=exact)


# ---- rows -------------------------------------------------------------------------------------


def action_alpha(
    layers: Sequence[Any],
    trajs: Sequence[np.ndarray],
    *,
    site: str,
    n_boot: int,
    rng: np.random.Generator,
    n_proj: int = N_PROJ,
    closed: bool = True,
    ranks: tuple[int, int] | None = None,
    rank_bounds: Sequence[int | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Evidence:
    """`layers`: per-layer SiteData of the probe (shallow to deep); `trajs`: per-layer stimulus
    trajectories [K loops, T frames, m units] at the same sites; `rank_bounds`: the architecture's
    bound on each layer's rank (`Adapter.rank_bound`), or None."""
    width = max((int(np.shape(data.samples)[1]) for data in layers), default=0)
    with blas_threads(1, enabled=small_width(width)):
        return _action_alpha(layers, trajs, site=site, n_boot=n_boot, rng=rng, n_proj=n_proj, closed=closed,
                             ranks=ranks, rank_bounds=rank_bounds, extra=extra)


def _action_alpha(
    layers: Sequence[Any],
    trajs: Sequence[np.ndarray],
    *,
    site: str,
    n_boot: int,
    rng: np.random.Generator,
    n_proj: int = N_PROJ,
    closed: bool = True,
    ranks: tuple[int, int] | None = None,
    rank_bounds: Sequence[int | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Evidence:
    if len(layers) < MIN_LAYERS:
        return SPEC.skipped(site, f"needs at least {MIN_LAYERS} layers to "
                                  f"correlate across layers; the model has {len(layers)}")
    if len(trajs) != len(layers):
        raise PolyauditError(f"{len(trajs)} trajectories for {len(layers)} layers", site=site)
    for i, (data, traj) in enumerate(zip(layers, trajs, strict=True)):
        if data.n_nonfinite or not np.all(np.isfinite(traj)):
            return SPEC.failed(site, f"activations at layer {i} contain NaN/inf values")
    n = int(layers[0].samples.shape[0])
    try:
        fits = layer_alphas(layers, n_boot, rng, ranks, rank_bounds)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), n=n)
    acts = measure_actions(fits, trajs, n_proj=n_proj, closed=closed, rng=rng)
    kept = acts.fits.kept
    details = _layer_details(acts, closed=closed, n_proj=n_proj, n_boot=n_boot, frames=int(trajs[0].shape[1]),
                             extra=extra)
    if len(kept) < MIN_LAYERS:
        return SPEC.failed(site, f"only {len(kept)} layer(s) resolve enough "
                                 f"eigenvalues for a power-law fit; {MIN_LAYERS} are needed", n=n, details=details)
    if np.any(acts.spread <= 0):
        return SPEC.failed(site, "the stimulus does not move the activations "
                                 f"at layer {kept[int(np.argmin(acts.spread))]}", n=n, details=details)
    rel = acts.raw / acts.spread
    details.update(relative_actions=rel.tolist(), rho_raw_action=_spearman(acts.raw, acts.fits.alphas))
    rho = _spearman(rel, acts.fits.alphas)
    if not np.isfinite(rho):
        return SPEC.failed(site, "alpha or the action is the same at every "
                                 "layer: Spearman is undefined", n=n, details=details)
    try:
        trend = measure_trend(acts, rel, n_boot=n_boot, n_proj=n_proj, rng=rng)
    except PolyauditError as e:
        return SPEC.failed(site, str(e), n=n, details=details)
    floor = min_layer_p(len(kept))
    details.update(p_bootstrap=float(trend.p_boot), p_layer_permutation=float(trend.p_layers),
                   layer_orderings=trend.n_orderings, layer_permutation_exact=trend.exact, min_layer_p=floor)
    return SPEC.evidence(
        site, effect=rho, ci=(float(trend.ci[0]), float(trend.ci[1])), p=float(trend.p), n=n,
        notes=_notes(acts, trend, n=n, n_proj=n_proj, frames=int(trajs[0].shape[1]), floor=floor),
        details=details,
    )


def _layer_details(acts: LayerActions, *, closed: bool, n_proj: int, n_boot: int, frames: int,
                   extra: Mapping[str, Any] | None) -> dict[str, Any]:
    fits, raw, spread = acts.fits, acts.raw, acts.spread
    per_layer = [{"layer": i, "alpha": float(fits.alphas[j]), "r2": float(fits.r2[j]), "action": float(raw[j]),
                  "expected_action": expected_action(acts.trajs[j], closed),
                  "relative_action": float(raw[j] / spread[j]) if spread[j] > 0 else None,
                  "width": int(acts.trajs[j].shape[-1])} for j, i in enumerate(fits.kept)]
    return {
        "layers": per_layer, "alphas": fits.alphas.tolist(), "actions": raw.tolist(), "n_proj": n_proj,
        "n_loops": acts.n_loops, "frames": frames, "ranks": list(fits.ranks), "n_boot": n_boot,
        "excluded_layers": fits.excluded, **dict(extra or {})}


def _notes(acts: LayerActions, trend: ActionTrend, *, n: int, n_proj: int, frames: int, floor: float) -> str:
    fits, n_kept = acts.fits, len(acts.fits.kept)
    excluded = f"; layers {', '.join(str(e['layer']) for e in fits.excluded)} excluded (too few eigenvalues)" \
        if fits.excluded else ""
    too_few = (f"; {n_kept} layers cannot reach significance: the smallest two-sided layer-permutation p "
               f"is 2/{n_kept}! = {floor:.3g} >= {ALPHA:g}, so the row cannot PASS (or FAIL); the CI is "
               f"conditional on these layers" if floor >= ALPHA else "")
    return (f"relative action of {acts.n_loops} stimulus loops x {frames} frames on {n_proj} random "
            f"projections; alpha fit ranks {fits.ranks[0]}-{fits.ranks[1]} on {n} probe samples{excluded}; "
            f"p = max(bootstrap {trend.p_boot:.3g}, layer permutation {trend.p_layers:.3g} over "
            f"{'all ' if trend.exact else ''}{trend.n_orderings} orderings){too_few}")
