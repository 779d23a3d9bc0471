"""Planted ground truth for C1-C3: networks whose polytope-lens answer is known (polytope_planted.py).

C1 must PASS where spline codes separate the classes and directions do not, and must not PASS on
shuffled labels in more than 1 of 20 seeds. C2 and C3 must PASS on a net whose output changes
exactly at its boundaries; they must not on the controls whose boundaries sit where the output is
flat (there an input's own crossings go against its own semantic change), nor where no boundary can
change the output at all: the frozen-code control then equals the real change and every effect is
exactly 0. (Calibrated rates over seeds: tests/calibration/cases_c2c3.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from polytope_planted import _linear, boundary_nets, monosemantic_layer, two_class_inputs

from polyaudit.analyses import c1, c2, c3
from polyaudit.interventions.downstream import (
    AdapterDownstream,
    Contexts,
    SequentialDownstream,
    later_sites,
)
from polyaudit.models.sequential import SequentialAdapter
from polyaudit.verdict import Evidence, Status, decide


def _preacts(net: torch.nn.Sequential, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net[0](torch.from_numpy(x)).numpy()


def test_c1_polytopes_beat_every_baseline_when_planted() -> None:
    net, x, y = monosemantic_layer(seed=0)
    rows = c1.monosemanticity(_preacts(net, x), y, site="planted", rng=np.random.default_rng(0),
                              n_boot=200, n_perm=200)
    for baseline, ev in rows.items():
        assert decide(ev).status is Status.PASS, (baseline, ev.effect, ev.ci, ev.p)
        lo, hi = ev.ci
        assert lo <= ev.effect <= hi
        methods = ev.details["methods"]
        assert methods["polytope"]["H"] < 0.2 < methods["direction"]["H"]
        assert all(m["sizes"]["largest_fraction"] <= 0.5 for m in methods.values())


def test_c1_shuffled_labels_do_not_pass() -> None:
    passes = 0
    for seed in range(20):
        net, x, y = monosemantic_layer(seed=seed)
        shuffled = np.random.default_rng(100 + seed).permutation(y)
        rows = c1.monosemanticity(_preacts(net, x), shuffled, site="planted", rng=np.random.default_rng(seed),
                                  n_boot=100, n_perm=100)
        passes += decide(rows["direction"]).status is Status.PASS
    assert passes <= 1


def test_c1_reports_a_degenerate_clustering_as_a_finding() -> None:
    """One giant polytope cluster is a finding about the layer (reported, PASS withheld), never ERROR."""
    rng = np.random.default_rng(0)
    acts = np.abs(rng.standard_normal((300, 16)))  # every unit always on: one spline code
    acts[:5, 0] = -1.0  # ... but for five samples
    rows = c1.monosemanticity(acts, rng.integers(0, 3, 300), site="planted", rng=rng, n_boot=1000, n_perm=1000)
    for ev in rows.values():
        assert decide(ev).status is not Status.ERROR and decide(ev).status is not Status.PASS
        assert "polytope partition degenerate" in ev.notes and "degenerate" in (ev.caveat or "")
        assert ev.details["methods"]["polytope"]["sizes"]["largest_fraction"] > 0.9


def test_c1_every_spline_code_equal_is_one_cluster_not_an_error() -> None:
    rng = np.random.default_rng(1)
    acts = np.abs(rng.standard_normal((200, 12))) + 0.1  # one spline code for every sample
    rows = c1.monosemanticity(acts, rng.integers(0, 4, 200), site="planted", rng=rng, n_boot=1000, n_perm=1000)
    for ev in rows.values():
        assert ev.error is None and ev.details["methods"]["polytope"]["sizes"]["n_clusters"] == 1


@pytest.fixture(scope="module")
def planted() -> tuple[dict[str, torch.nn.Sequential], np.ndarray, np.ndarray]:
    x, y = two_class_inputs(seed=0)
    return boundary_nets(), x, y


def _c2(down: object, x: np.ndarray, y: np.ndarray) -> dict[str, Status]:
    rows = c2.boundaries_track_semantics(down, x, y, site="input", rng=np.random.default_rng(0),
                                         settings=c2.settings_for("quick"), n_boot=200)
    return {k: decide(ev).status for k, ev in rows.items()}


def _c3_rows(down: object, x: np.ndarray, y: np.ndarray) -> dict[str, Evidence]:
    return c3.direction_validity(down, x, y, site="input", rng=np.random.default_rng(0),
                                 settings=c3.settings_for("quick"), n_boot=200)


def _c3(down: object, x: np.ndarray, y: np.ndarray) -> dict[str, Status]:
    return {k: decide(ev).status for k, ev in _c3_rows(down, x, y).items()}


def test_c2_verdicts_follow_where_the_boundaries_are(planted) -> None:
    nets, x, y = planted
    aligned = _c2(SequentialDownstream(nets["aligned"]), x, y)
    control = _c2(SequentialDownstream(nets["control_paths"]), x, y)
    assert aligned == {"linear": Status.PASS, "slerp": Status.PASS, "diff-vs-same": Status.PASS}
    assert control["linear"] is Status.FAIL and control["slerp"] is Status.FAIL


def test_c3_verdicts_follow_where_the_boundaries_are(planted) -> None:
    nets, x, y = planted
    aligned = _c3_rows(SequentialDownstream(nets["aligned"]), x, y)
    control = _c3_rows(SequentialDownstream(nets["control_scale"]), x, y)
    assert {k: decide(ev).status for k, ev in aligned.items()} == {"scale": Status.PASS, "direction": Status.PASS}
    for key, ev in control.items():
        # the output changes inside one polytope (the ramp) and is flat where the dummy boundaries
        # are: each input's own crossings go against its own change, and the net does not PASS
        assert ev.details["own_alignment"] < 0 < aligned[key].details["own_alignment"], key
        assert ev.effect < aligned[key].effect and decide(ev).status is not Status.PASS, key


def test_boundaries_that_cannot_change_the_output_give_exactly_zero(planted) -> None:
    """A net linear in x0 plus units with output weight 0 whose boundaries cross x0 exactly where
    the output changes (boundaries and semantic change share a geometric cause): every C2 and C3
    effect is 0 with a CI of [0, 0], so every row FAILs (inside the no-effect band)."""
    _, x, y = planted
    w = np.zeros((13, 3))
    w[:, 0] = 1.0
    bias = np.concatenate([[10.0], -np.linspace(-0.6, 0.6, 12)])  # unit 0 always on; 12 boundaries on x0
    out = np.zeros((2, 13))
    out[:, 0] = (-2.0, 2.0)
    net = torch.nn.Sequential(_linear(w, bias), torch.nn.ReLU(), _linear(out, np.array([20.0, -20.0]))).eval()
    rows = {**c2.boundaries_track_semantics(SequentialDownstream(net), x, y, site="input",
                                            rng=np.random.default_rng(0), settings=c2.settings_for("quick"),
                                            n_boot=200),
            **_c3_rows(SequentialDownstream(net), x, y)}
    for key, ev in rows.items():
        assert ev.effect == 0.0 and ev.ci == (0.0, 0.0) and decide(ev).status is Status.FAIL, key
    assert rows["linear"].details["own_alignment"] > 0.2  # version 1 would have seen tracking here


def test_sampled_crossings_agree_with_exact_ones(planted) -> None:
    """The approximate route (adapter hooks, dense sampling + bisection) on the same ReLU nets
    reaches the verdicts of the exact walk."""
    nets, x, y = planted
    for name, net in nets.items():
        adapter = SequentialAdapter(net)
        sampled = AdapterDownstream(adapter, None, later_sites(adapter, None), Contexts(torch.from_numpy(x)))
        assert _c2(sampled, x, y) == _c2(SequentialDownstream(net), x, y), name
