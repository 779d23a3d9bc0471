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

ALPHAS = (-2.5, -2.0, -1.5, -1.0)
# C6 tests its correlation over the layers' orderings (exact permutation): 4 layers cannot reach
# p < 0.05 (2/4! = 0.083); 8 layers over the same range can (2/8!).
ALPHAS_8 = tuple(float(a) for a in np.linspace(-2.5, -1.0, 8))


@pytest.mark.parametrize(("reverse", "expected"), [(False, Status.PASS), (True, Status.FAIL)])
def test_flatter_spectrum_rougher_code(reverse: bool, expected: Status) -> None:
    """Stringer et al.'s setting: mode i of a code on the circle has frequency i and variance i^alpha.
    A flatter spectrum puts more variance on fast modes: the action grows with alpha (PASS). Giving
    the largest variance to the fastest mode instead (same spectra) reverses it (FAIL)."""
    layers, trajs = fourier_layers(ALPHAS_8, reverse=reverse)
    ev = c6.action_alpha(layers, trajs, site="resid", n_boot=200, rng=np.random.default_rng(0))
    fitted = [row["alpha"] for row in ev.details["layers"]]
    assert fitted == pytest.approx(ALPHAS_8, abs=0.3)  # the planted spectra are what C6 measures
    rel = ev.details["relative_actions"]
    assert (np.diff(rel) > 0).all() if not reverse else (np.diff(rel) < 0).all()
    verdict = decide(ev)
    assert verdict.status is expected, verdict.reason


def test_four_layers_cannot_reach_significance() -> None:
    """The same planted codes at 4 layers: the ranking is perfect and the bootstrap CI excludes 0,
    but 4 layers allow only 24 orderings (two-sided p >= 2/24): INCONCLUSIVE, and the notes say why."""
    layers, trajs = fourier_layers(ALPHAS)
    ev = c6.action_alpha(layers, trajs, site="resid", n_boot=200, rng=np.random.default_rng(0))
    assert ev.effect == pytest.approx(1.0) and ev.ci[0] > 0
    assert ev.details["p_layer_permutation"] == pytest.approx(2 / 24)
    assert ev.details["layer_orderings"] == 24 and ev.details["layer_permutation_exact"]
    assert ev.p >= ev.details["p_bootstrap"] and ev.p == pytest.approx(2 / 24)
    assert decide(ev).status is Status.INCONCLUSIVE
    assert "4 layers cannot reach significance" in ev.notes


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
    at all, so Spearman(action, alpha) is undefined: the row is an ERROR, never PASS or FAIL."""
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
    ev = c6.action_alpha(subject.capture().get_kind("resid"), trajs, site="resid", n_boot=50,
                         rng=np.random.default_rng(2))
    rows = ev.details["layers"]
    for row, c in zip(rows, scales, strict=True):
        assert row["alpha"] == pytest.approx(rows[0]["alpha"], abs=c6.ALPHA_RESOLUTION / 2)  # float16 storage
        assert row["action"] == pytest.approx(c**2 * rows[0]["action"], rel=1e-5)
        assert row["expected_action"] == pytest.approx(c**2 * rows[0]["expected_action"], rel=1e-5)
        assert row["relative_action"] == pytest.approx(rows[0]["relative_action"], rel=1e-6)
    verdict = decide(ev)
    assert verdict.status is Status.ERROR and "undefined" in verdict.reason


def test_circle_through_two_points() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(10), rng.standard_normal(10)
    pts = circle_through(a, b, 16, rng)
    assert np.allclose(pts[0], a) and np.allclose(pts[8], b)
    centre = (a + b) / 2
    assert np.allclose(np.linalg.norm(pts - centre, axis=1), np.linalg.norm(a - b) / 2)
    basis = np.linalg.qr(np.stack([a, b], axis=1))[0]
    assert np.allclose(pts - (pts @ basis) @ basis.T, 0)  # stays in the plane spanned by a and b
