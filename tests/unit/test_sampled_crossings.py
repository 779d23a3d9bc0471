"""Crossings counted on a random sample of the later units (large smooth models): the estimator of
every unit's total is unbiased with an honest standard error, and the evaluator reads exactly the
sampled units' codes."""

from __future__ import annotations

import numpy as np
import torch

from polyaudit.analyses.polylines import unit_estimate
from polyaudit.interventions.downstream import UnitSample
from polyaudit.models.base import Site


def _codes(rng: np.random.Generator, n_points: int, widths: tuple[int, ...]) -> np.ndarray:
    """bool [points, units]: units flip at random, some often, most rarely (a skewed population)."""
    n = sum(widths)
    rate = rng.gamma(0.5, 0.2, size=n).clip(0, 0.9)
    flips = rng.random((n_points - 1, n)) < rate
    start = rng.random(n) < 0.5
    return np.concatenate([start[None], (start[None] + np.cumsum(flips, axis=0)) % 2 == 1], axis=0)


def _sample(rng: np.random.Generator, widths: tuple[int, ...], frac: float) -> UnitSample:
    index, sampled = {}, []
    for j, w in enumerate(widths):
        m = max(2, round(w * frac))
        index[Site(layer=j, kind="mlp_pre", module=f"m{j}")] = torch.from_numpy(np.sort(rng.choice(w, m, replace=False)))
        sampled.append(m)
    return UnitSample(index=index, widths=widths, sampled=tuple(sampled))


def test_the_estimate_is_unbiased_and_its_interval_covers() -> None:
    rng = np.random.default_rng(0)
    widths = (900, 600, 1500)
    codes = _codes(rng, 40, widths)
    truth = int(np.count_nonzero(codes[1:] != codes[:-1]))
    offsets = np.cumsum((0, *widths))[:-1]
    estimates, covered = [], 0
    draws = 300
    for _ in range(draws):
        sample = _sample(rng, widths, 0.1)
        cols = np.concatenate([off + idx.numpy() for off, idx in zip(offsets, sample.index.values(), strict=True)])
        est, se = unit_estimate(np.packbits(codes[:, cols], axis=-1), sample)
        estimates.append(est)
        covered += abs(est - truth) <= 1.96 * se
    estimates_a = np.asarray(estimates)
    assert abs(estimates_a.mean() - truth) < 4 * estimates_a.std() / np.sqrt(draws)  # unbiased
    assert covered / draws >= 0.9  # the standard error is honest (nominal 95%)


def test_every_unit_sampled_is_the_exact_count() -> None:
    rng = np.random.default_rng(1)
    widths = (64, 64)
    codes = _codes(rng, 20, widths)
    sample = _sample(rng, widths, 1.0)
    est, se = unit_estimate(np.packbits(codes, axis=-1), sample)
    assert est == np.count_nonzero(codes[1:] != codes[:-1]) and se == 0


def test_the_evaluator_reads_exactly_the_sampled_units(tiny_models) -> None:  # type: ignore[no-untyped-def]
    from polyaudit.interventions.downstream import Contexts
    from polyaudit.interventions.evaluators import make_downstream
    from polyaudit.models.loader import load_model

    lm = load_model(str(tiny_models["gpt2"]))
    ids = lm.tokenizer(["one two three four five six"], return_tensors="pt")["input_ids"].repeat(3, 1)
    ctx = Contexts(inputs=ids, pos=np.array([2, 3, 4]))
    site = lm.adapter.site("resid", 0)
    pts = np.random.default_rng(2).standard_normal((3, 64))
    full = make_downstream(lm, site, ctx)
    sampled = make_downstream(lm, site, ctx, sample_units=100, seed=7)
    codes_full, out_full = full.outputs(pts, np.arange(3))
    codes_s, out_s = sampled.outputs(pts, np.arange(3))
    sample = sampled.sampling
    assert sample is not None and sample.n_units == codes_full.shape[1] and codes_s.shape[1] == sample.n_sampled
    offsets = np.cumsum((0, *sample.widths))[:-1]
    cols = np.concatenate([off + idx.numpy() for off, idx in zip(offsets, sample.index.values(), strict=True)])
    np.testing.assert_array_equal(codes_s, codes_full[:, cols])
    np.testing.assert_allclose(out_s, out_full, atol=1e-6)
    again = make_downstream(lm, site, ctx, sample_units=100, seed=7)
    again.outputs(pts, np.arange(3))
    assert all(torch.equal(a, b) for a, b in zip(again.sampling.index.values(), sample.index.values(), strict=True))
    small = make_downstream(lm, site, ctx, sample_units=10_000, seed=7)  # more than there are: every unit
    small.outputs(pts, np.arange(3))
    assert small.sampling is None
