"""The single-checkpoint C5's sequential rule: how many groups (sequences, inputs) to measure
before the adjacent layers' differences in loss increase are reliable enough for the statistic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyaudit.analyses.c5 import MIN_GROUPS, RELIABILITY, difference_reliability, enough_groups
from polyaudit.interventions.unit_dropout import per_sample
from polyaudit.probes.base import ProbeSet


def _measured(steps: np.ndarray, noise: float, m: int, seed: int = 0) -> np.ndarray:
    """[L, m] per-group increases: a profile with these adjacent steps plus independent noise."""
    rng = np.random.default_rng(seed)
    profile = np.concatenate([[0.0], np.cumsum(steps)])
    return profile[:, None] + noise * rng.standard_normal((profile.size, m))


def test_reliability_is_one_without_noise_and_near_zero_with_noise_alone() -> None:
    steps = np.linspace(-1, 1, 9)
    assert difference_reliability(_measured(steps, 0.0, 20)) == pytest.approx(1.0)
    flat = [difference_reliability(_measured(np.zeros(9), 1.0, 40, seed)) for seed in range(200)]
    assert float(np.median(flat)) < 0.2 and max(flat) < RELIABILITY  # no spread but noise: nothing reliable
    assert difference_reliability(_measured(np.full(9, 0.5), 0.0, 20)) == -math.inf  # all differences equal
    assert math.isnan(difference_reliability(np.ones((2, 10))))  # one difference
    assert math.isnan(difference_reliability(np.ones((5, 1))))  # one group


def test_reliability_estimates_the_share_of_the_spread_that_is_signal() -> None:
    """var(steps) = 1 and noise SD s per group: the differences' noise variance is 2 s^2 / m."""
    rng = np.random.default_rng(1)
    steps = rng.standard_normal(30)
    steps = (steps - steps.mean()) / steps.std(ddof=1)
    m, s = 50, 1.5
    truth = 1.0 / (1.0 + 2 * s**2 / m)
    got = np.median([difference_reliability(_measured(steps, s, m, seed)) for seed in range(100)])
    assert got == pytest.approx(truth, abs=0.03)


def test_enough_needs_the_minimum_and_the_reliability() -> None:
    steps = np.linspace(-1, 1, 9)
    clean = _measured(steps, 0.01, 64)
    noisy = _measured(steps, 5.0, 64)
    n = 64
    assert not enough_groups(clean[:, : MIN_GROUPS - 1], n)  # below the minimum, however reliable
    assert enough_groups(clean[:, :MIN_GROUPS], n)
    assert difference_reliability(noisy[:, :MIN_GROUPS]) < RELIABILITY
    assert not enough_groups(noisy[:, :MIN_GROUPS], n)
    assert enough_groups(noisy, n)  # the probe is used up
    assert not enough_groups(clean[:, :MIN_GROUPS], 4 * MIN_GROUPS + 4)  # a quarter of a larger probe first


def test_per_sample_leaves_out_the_samples_of_inputs_not_run() -> None:
    import torch

    positions = np.array([[0, 1], [2, 0], [1, 3], [2, 2], [0, 0]])
    probe = ProbeSet(name="t", kind="tokens", inputs=torch.zeros((3, 4), dtype=torch.long), positions=positions)
    values = np.array([10.0, 11.0, 12.0])
    np.testing.assert_array_equal(per_sample(values, probe), [10.0, 12.0, 11.0, 12.0, 10.0])
    np.testing.assert_array_equal(per_sample(values[:2], probe), [10.0, 11.0, 10.0])
