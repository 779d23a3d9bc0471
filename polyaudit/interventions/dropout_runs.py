"""C5 measurements from models: test-time unit dropout runs and activation spectra, for a dropout
family or a single checkpoint. The statistics live in `polyaudit.analyses.c5` (pure numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polyaudit.analyses.c5 import SINGLE_RATE, TEST_RATES, FamilyMeasurements
from polyaudit.interventions.unit_dropout import (
    per_sample,
    score,
    task_for,
    torch_generator,
    unit_site_kind,
)
from polyaudit.threads import blas_threads, compute_threads, small_width


def layer_spectra(samples: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """Eigenspectrum of each [n, d] activation array (None where the data has no variance)."""
    from polyaudit.errors import PolyauditError
    from polyaudit.measures.spectrum import eigenspectrum

    out: list[np.ndarray | None] = []
    for x in samples:
        try:
            out.append(eigenspectrum(x))
        except PolyauditError:
            out.append(None)
    return out


def fit_layer(eigs: Sequence[np.ndarray | None], n: int, rank_bound: int | None = None
              ) -> list[tuple[float, float, float]]:
    """(alpha, participation ratio, R^2) of each spectrum of ONE layer across models, all fitted over
    one shared rank range (so the models' alphas are comparable); NaNs where it cannot be fitted.
    `rank_bound`: the architecture's bound on the layer's rank (`Adapter.rank_bound`), or None."""
    from polyaudit.analyses.coding import shared_fit_ranks
    from polyaudit.errors import PolyauditError
    from polyaudit.measures.spectrum import fit_power_law, participation_ratio

    nan = (float("nan"),) * 3
    valid = [e for e in eigs if e is not None]
    try:
        ranks = shared_fit_ranks(n, valid, [rank_bound] * len(valid)) if valid else None
    except PolyauditError:
        ranks = None
    out = []
    for eig in eigs:
        if eig is None or ranks is None:
            out.append(nan)
            continue
        try:
            fit = fit_power_law(eig, ranks)
            out.append((float(fit.alpha), float(participation_ratio(eig)), float(fit.r2)))
        except PolyauditError:
            out.append(nan)
    return out


def measure_family(
    members: Sequence[tuple[float, Any]],
    *,
    rng: np.random.Generator,
    test_rates: Sequence[float] = TEST_RATES,
    batch_size: int = 8,
) -> FamilyMeasurements:
    """`members`: (training rate, run-time Subject) pairs. For every member, layer (unit site) and
    test-time rate q: the probe's mean metric under unit dropout; and each layer's spectrum."""
    n_models = len(members)
    first = members[0][1]
    kind = unit_site_kind(first.adapter)
    sites = first.adapter.sites(kind)
    perf = np.empty((n_models, len(sites), len(test_rates)))
    clean = np.empty(n_models)
    alpha = np.empty((n_models, len(sites)))
    pr = np.empty_like(alpha)
    r2 = np.empty_like(alpha)
    chance, metric, higher = float("nan"), "", True
    spectra: dict[int, list[np.ndarray | None]] = {}
    n_samples = 0
    for i, (_, sub) in enumerate(members):
        probe = sub.probe()
        with compute_threads(sub.loaded.model):
            task = task_for(sub.loaded, probe)
            chance, metric, higher = task.chance, task.metric, task.higher_is_better
            clean[i] = score(sub.loaded, probe, task, batch_size=batch_size).mean_metric
            for j, site in enumerate(sub.adapter.sites(kind)):
                for k, q in enumerate(test_rates):
                    perf[i, j, k] = score(sub.loaded, probe, task, site=site, q=q,
                                          generator=torch_generator(rng), batch_size=batch_size).mean_metric
            if id(sub) not in spectra:  # a model listed twice is one model: one spectrum
                layers = sub.capture().get_kind(kind)
                n_samples = layers[0].samples.shape[0]
                spectra[id(sub)] = layer_spectra([data.samples for data in layers])
    with blas_threads(1, enabled=small_width(max((e.shape[0] for es in spectra.values() for e in es if e is not None), default=0))):
        for j in range(len(sites)):
            fits = fit_layer([spectra[id(sub)][j] for _, sub in members], n_samples,
                             first.adapter.rank_bound(sites[j]))
            for i, fit in enumerate(fits):
                alpha[i, j], pr[i, j], r2[i, j] = fit
    from polyaudit.analyses.c5 import retained

    return FamilyMeasurements(
        rates=np.array([r for r, _ in members], dtype=float),
        retained=retained(perf, clean, chance, higher),
        alpha=alpha, participation=pr, clean=clean, chance=chance,
        sites=tuple(s.name for s in sites), test_rates=tuple(test_rates), metric=metric,
        higher_is_better=higher, r2=r2,
    )


def measure_single(
    subject: Any, *, rng: np.random.Generator, q: float = SINGLE_RATE, batch_size: int = 8
) -> tuple[list[Any], np.ndarray, dict[str, Any]]:
    """(per-layer SiteData at the unit site, loss increase [L, n_samples], details) of one model:
    each layer in turn gets unit dropout at rate q; the increase is paired with the kept samples."""
    probe = subject.probe()
    kind = unit_site_kind(subject.adapter)
    with compute_threads(subject.loaded.model):
        layers = subject.capture().get_kind(kind)
        task = task_for(subject.loaded, probe)
        clean = score(subject.loaded, probe, task, batch_size=batch_size)
        increase = np.stack([
            per_sample(score(subject.loaded, probe, task, site=data.site, q=q, generator=torch_generator(rng),
                             batch_size=batch_size).loss - clean.loss, probe)
            for data in layers
        ])
    extra = {"task": task.kind, "clean_loss": float(clean.loss.mean()), "clean_metric": clean.mean_metric,
             "metric": task.metric, "unit_site": kind}
    return layers, increase, extra
