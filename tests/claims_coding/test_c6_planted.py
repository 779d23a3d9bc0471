"""C6 on planted ground truth: codes with known power-law spectra along a circle of stimuli, the
action identity on a real model's trajectories, and a model whose layers are scaled copies."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from coding_planted import fourier_layers, subject_of

from polyaudit.analyses import c6
from polyaudit.interventions.stimuli import (
    circle_through,
    dot_loops,
    trajectories,
    vector_trajectories,
)
from polyaudit.measures.action import action, action_standard_error, expected_action
from polyaudit.probes.digits import digits_probe
from polyaudit.profiles import PROFILES
from polyaudit.verdict import Status, decide

ALPHAS = (-2.5, -2.0, -1.6, -1.0)
# C6 correlates the changes between adjacent layers (exact permutation): 4 layers (3 changes) cannot
# reach p < 0.05 (2/3! = 0.33); 8 layers (2/7! = 4e-4) can. The changes must differ from each other.
ALPHAS_8 = (-2.5, -2.45, -2.1, -2.0, -1.7, -1.68, -1.3, -1.0)


@pytest.mark.parametrize(("reverse", "expected"), [(False, Status.PASS), (True, Status.FAIL)])
def test_flatter_spectrum_rougher_code(reverse: bool, expected: Status) -> None:
    """Stringer et al.'s setting: mode i of a code on the circle has frequency i and variance i^alpha.
    A flatter spectrum puts more variance on fast modes: the action grows with alpha (PASS). Giving
    the largest variance to the fastest mode instead (same spectra) reverses it (FAIL)."""
    layers, trajs = fourier_layers(ALPHAS_8, reverse=reverse)
    ev = c6.SPEC.adjust({"r": c6.action_alpha(layers, trajs, site="resid", rng=np.random.default_rng(0))})["r"]
    fitted = [row["alpha"] for row in ev.details["layers"]]
    assert fitted == pytest.approx(ALPHAS_8, abs=0.05)  # the planted spectra, on the stimulus ensemble
    assert list(ev.details["probe_alphas"].values()) == pytest.approx(ALPHAS_8, abs=0.05)
    rel = ev.details["relative_actions"]
    assert (np.diff(rel) > 0).all() if not reverse else (np.diff(rel) < 0).all()
    verdict = decide(ev)
    assert verdict.status is expected, verdict.reason


def test_four_layers_cannot_reach_significance() -> None:
    """The same planted codes at 4 layers: the changes rank perfectly, but 3 changes allow only 6
    orderings (p >= 2/6) and no interval: INCONCLUSIVE, and the notes say why."""
    layers, trajs = fourier_layers(ALPHAS)
    ev = c6.action_alpha(layers, trajs, site="resid", rng=np.random.default_rng(0))
    assert ev.effect == pytest.approx(1.0) and ev.ci == (-1.0, 1.0)
    assert ev.details["p_differences"] == pytest.approx(2 / 6) and ev.details["orderings"] == [6, 24]
    assert ev.p >= 2 / 6 and ev.n == 3
    assert decide(ev).status is Status.INCONCLUSIVE
    assert "3 layer pairs cannot reach significance" in ev.notes


def test_alpha_is_fitted_on_the_stimulus_ensemble() -> None:
    """Probe samples from one spectrum, stimulus loops from another: the row's alphas are the
    stimulus ensemble's, the probe's are in the details."""
    probe_layers, _ = fourier_layers((-1.0, -1.0, -1.0))
    _, trajs = fourier_layers((-2.5, -2.0, -1.5))
    ev = c6.action_alpha(probe_layers, trajs, site="resid", rng=np.random.default_rng(0))
    assert ev.details["alphas"] == pytest.approx([-2.5, -2.0, -1.5], abs=0.05)
    assert list(ev.details["probe_alphas"].values()) == pytest.approx([-1.0] * 3, abs=0.05)
    assert ev.details["alpha_on"] == "stimulus ensemble"


def test_action_identity_on_a_model_trajectory() -> None:
    """On real activations (a random ReLU net driven by the moving dot), the mean action over many
    random projections equals 1/2 tr(Sigma) of the trajectory's successive differences within
    sampling error, at every layer."""
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 32), torch.nn.ReLU())
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)
    subject = subject_of(net, digits_probe(PROFILES["quick"], 0), "random-relu")
    trajs = vector_trajectories(subject.loaded, dot_loops(), "resid")
    assert [t.shape for t in trajs] == [(8, 64, 48), (8, 64, 32)]
    for traj in trajs:
        one = traj[0].astype(np.float64)
        n_proj = 5000
        got = action(one, np.random.default_rng(1), n_proj=n_proj)
        assert abs(got - expected_action(one)) < 4 * action_standard_error(one, n_proj)


def test_layers_that_are_scaled_copies() -> None:
    """Layers 2 and 3 are layer 1 times 2 and times 6 (identity weights on non-negative inputs):
    alpha is the same at every layer, the raw action grows exactly as c^2, the relative action not
    at all, so the changes of both are zero and their Spearman undefined: the row is INCONCLUSIVE (no
    effect can be estimated; nothing went wrong), never PASS or FAIL."""
    g = torch.Generator().manual_seed(1)
    first = torch.nn.Linear(64, 32)
    with torch.no_grad():
        first.weight.copy_(torch.randn(first.weight.shape, generator=g) / 8)
        first.bias.fill_(0.1)
    scales = (1.0, 2.0, 6.0)
    layers: list[torch.nn.Module] = [first, torch.nn.ReLU()]
    for prev, c in itertools.pairwise(scales):
        lin = torch.nn.Linear(32, 32)
        with torch.no_grad():
            lin.weight.copy_(torch.eye(32) * (c / prev))
            lin.bias.zero_()
        layers += [lin, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers).eval()
    subject = subject_of(net, digits_probe(PROFILES["quick"], 0), "scaled-copies")
    trajs, stimulus = trajectories(subject, "resid", np.random.default_rng(0))
    assert stimulus["stimulus"] == "moving dot"
    ev = c6.action_alpha(subject.capture().get_kind("resid"), trajs, site="resid", rng=np.random.default_rng(2))
    rows = ev.details["layers"]
    for row, c in zip(rows, scales, strict=True):
        assert row["alpha"] == pytest.approx(rows[0]["alpha"], abs=c6.ALPHA_RESOLUTION / 2)
        assert row["action"] == pytest.approx(c**2 * rows[0]["action"], rel=1e-5)
        assert row["expected_action"] == pytest.approx(c**2 * rows[0]["expected_action"], rel=1e-5)
        assert row["relative_action"] == pytest.approx(rows[0]["relative_action"], rel=1e-6)
    verdict = decide(ev)
    assert verdict.status is Status.INCONCLUSIVE and "no effect can be estimated" in verdict.reason
    assert "undefined" in verdict.reason and ev.effect != ev.effect


def test_circle_through_two_points() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(10), rng.standard_normal(10)
    pts = circle_through(a, b, 16, rng)
    assert np.allclose(pts[0], a) and np.allclose(pts[8], b)
    centre = (a + b) / 2
    assert np.allclose(np.linalg.norm(pts - centre, axis=1), np.linalg.norm(a - b) / 2)
    basis = np.linalg.qr(np.stack([a, b], axis=1))[0]
    assert np.allclose(pts - (pts @ basis) @ basis.T, 0)  # stays in the plane spanned by a and b


def test_responses_too_low_dimensional_for_a_power_law_are_a_finding() -> None:
    """Stimulus responses that span 4 dimensions at every layer: no power law to fit, so the row is
    SKIPPED with the reason (a finding about the model), not an ERROR."""
    layers, trajs = fourier_layers((-2.0, -1.5, -1.0))
    flat = [t[..., :4] for t in trajs]
    ev = c6.action_alpha(layers, flat, site="resid", rng=np.random.default_rng(0))
    assert decide(ev).status is Status.SKIPPED and "too few dimensions" in ev.skip
