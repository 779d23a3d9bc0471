"""The random-projection action (polyaudit.measures.action): its exact expectation 1/2 tr(Sigma),
its sampling error, scale behaviour, and closed-form values on circles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyaudit.errors import PolyauditError
from polyaudit.measures.action import (
    action,
    action_standard_error,
    expected_action,
    loop_frames,
    projection_energies,
    projection_matrix,
    relative_action,
    successive_differences,
)

shapes = st.tuples(st.integers(3, 40), st.integers(1, 30))


def _traj(seed: int, t: int, m: int) -> np.ndarray:
    """A random walk with unequal unit scales: steps are correlated across units, not isotropic."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((m, m)) * rng.uniform(0.1, 3.0, size=m)
    return np.cumsum(rng.standard_normal((t, m)) @ mix, axis=0)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), closed=st.booleans())
def test_mean_action_is_half_trace_of_step_scatter(shape: tuple[int, int], seed: int, closed: bool) -> None:
    """Over many projections r ~ N(0, I/m) the action converges to 1/2 tr(D^T D / m), within a few
    standard errors (the SE itself is exact: |D r|^2 is a Gaussian quadratic form)."""
    t, m = shape
    traj = _traj(seed, t, m)
    n_proj = 4000
    got = action(traj, np.random.default_rng(seed + 1), n_proj=n_proj, closed=closed)
    d = successive_differences(traj, closed)
    sigma = d.T @ d / m
    assert expected_action(traj, closed) == pytest.approx(0.5 * np.trace(sigma), rel=1e-10)
    se = action_standard_error(traj, n_proj, closed)
    assert abs(got - 0.5 * np.trace(sigma)) < 5 * se


def test_closed_loop_steps_have_zero_mean_so_scatter_is_covariance() -> None:
    """For a closed loop the steps sum to zero: E[action] = n_steps / (2 m) tr(cov(steps))."""
    traj = _traj(3, 50, 12)
    d = successive_differences(traj, closed=True)
    assert d.shape == (50, 12) and np.allclose(d.sum(0), 0)
    cov = np.cov(d.T, bias=True)
    assert expected_action(traj) == pytest.approx(50 / (2 * 12) * np.trace(cov), rel=1e-10)
    assert successive_differences(traj, closed=False).shape == (49, 12)


def test_standard_error_matches_the_spread_of_repeated_estimates() -> None:
    traj = _traj(5, 30, 20)
    estimates = [action(traj, np.random.default_rng(s), n_proj=200) for s in range(300)]
    assert np.std(estimates) == pytest.approx(action_standard_error(traj, 200), rel=0.15)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), scale=st.floats(0.01, 100.0))
def test_scaling_the_trajectory(shape: tuple[int, int], seed: int, scale: float) -> None:
    """The action scales as c^2 (same projections); the relative action does not change."""
    t, m = shape
    traj = _traj(seed, t, m)
    a1 = action(traj, np.random.default_rng(0), n_proj=64)
    a2 = action(scale * traj, np.random.default_rng(0), n_proj=64)
    assert a2 == pytest.approx(scale**2 * a1, rel=1e-9)
    r1 = relative_action(traj, np.random.default_rng(0), n_proj=64)
    r2 = relative_action(scale * traj, np.random.default_rng(0), n_proj=64)
    assert r2 == pytest.approx(r1, rel=1e-9)


@pytest.mark.parametrize("t", [8, 32, 100])
def test_circle_has_closed_form_actions(t: int) -> None:
    """T points on a circle of radius R in a random plane of R^m: every step has length
    2 R sin(pi/T), so E[action] = T (2 R sin(pi/T))^2 / (2m); relative action = 2 sin^2(pi/T)."""
    rng = np.random.default_rng(t)
    m, radius = 16, 3.0
    q, _ = np.linalg.qr(rng.standard_normal((m, 2)))
    theta = 2 * np.pi * np.arange(t) / t
    traj = radius * (np.cos(theta)[:, None] * q[:, 0] + np.sin(theta)[:, None] * q[:, 1]) + 5.0
    assert expected_action(traj) == pytest.approx(t * (2 * radius * np.sin(np.pi / t)) ** 2 / (2 * m))
    assert relative_action(traj, rng, n_proj=50) == pytest.approx(2 * np.sin(np.pi / t) ** 2, rel=1e-9)


def test_one_matrix_product_for_many_loops() -> None:
    """Loops [K, T, m] give energies [K, n_proj] equal to projecting each loop alone."""
    loops = np.stack([_traj(s, 20, 7) for s in range(4)])
    r = projection_matrix(7, 33, np.random.default_rng(1))
    energy, spread = projection_energies(loops, r)
    assert energy.shape == spread.shape == (4, 33)
    for k in range(4):
        e_k, s_k = projection_energies(loops[k], r)
        assert np.allclose(energy[k], e_k[0]) and np.allclose(spread[k], s_k[0])
        steps = successive_differences(loops[k]) @ r
        assert np.allclose(energy[k], (steps**2).sum(0))


def test_projection_variance_is_one_over_m() -> None:
    r = projection_matrix(50, 20000, np.random.default_rng(2))
    assert r.var() == pytest.approx(1 / 50, rel=0.02)


@pytest.mark.parametrize(
    ("traj", "match"),
    [(np.zeros((1, 4)), "2 frames"), (np.zeros((3,)), "frames"), (np.full((3, 2), np.nan), "NaN")],
)
def test_bad_trajectories(traj: np.ndarray, match: str) -> None:
    with pytest.raises(PolyauditError, match=match):
        action(traj, np.random.default_rng(0), n_proj=4)


def test_a_still_trajectory_has_no_relative_action() -> None:
    with pytest.raises(PolyauditError, match="does not move"):
        relative_action(np.ones((5, 3)), np.random.default_rng(0), n_proj=4)


def test_loop_frames_are_centred_per_loop_and_carry_the_spread() -> None:
    """The stimulus ensemble: every frame of every loop about its loop's mean; its total variance is
    the trajectory's projected spread up to the projections' 1/m."""
    traj = np.stack([_traj(s, 16, 5) + 10.0 * s for s in range(3)])
    frames = loop_frames(traj)
    assert frames.shape == (48, 5)
    np.testing.assert_allclose(frames.reshape(3, 16, 5).mean(axis=1), 0.0, atol=1e-9)
    r = projection_matrix(5, 20_000, np.random.default_rng(0))
    _, spread = projection_energies(traj, r)
    assert spread.mean() == pytest.approx(np.sum(frames**2) / 3 / 5, rel=0.03)
    np.testing.assert_allclose(loop_frames(traj[0]), frames[:16])
