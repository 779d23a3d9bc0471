"""Planted ground truth for C1-C3: networks whose polytope-lens answer is known (polytope_planted.py).

C1 must PASS where spline codes separate the classes and directions do not, and must not PASS on
shuffled labels in more than 1 of 20 seeds. C2 and C3 must PASS on a net whose output changes
exactly at its boundaries; C2 must not on a control whose boundaries sit where the output is flat,
and on C3's control an input's own crossings go against its own semantic change. (C3 version 2
compares own alignment with other inputs' boundaries: its calibrated null, a net whose boundaries
cannot change the output, is in tests/calibration.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from polytope_planted import boundary_nets, monosemantic_layer, two_class_inputs

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


def test_c1_refuses_a_degenerate_clustering() -> None:
    rng = np.random.default_rng(0)
    acts = np.abs(rng.standard_normal((300, 16)))  # every unit always on: one spline code
    acts[:5, 0] = -1.0  # ... but for five samples
    rows = c1.monosemanticity(acts, rng.integers(0, 3, 300), site="planted", rng=rng, n_boot=50, n_perm=50)
    for ev in rows.values():
        assert decide(ev).status is Status.ERROR and "degenerate polytope" in (ev.error or "")


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
        # are: each input's own crossings go against its own change ...
        assert ev.details["own_alignment"] < 0 < aligned[key].details["own_alignment"], key
        # ... and own-versus-mismatch is below the aligned net's. (The ramp ends at a real
        # boundary of its unit, input-specific and where the change stops, so the scale row's
        # contrast need not be 0 here; the calibrated null is in tests/calibration.)
        assert ev.effect < aligned[key].effect, key


def test_sampled_crossings_agree_with_exact_ones(planted) -> None:
    """The approximate route (adapter hooks, dense sampling + bisection) on the same ReLU nets
    reaches the verdicts of the exact walk."""
    nets, x, y = planted
    for name, net in nets.items():
        adapter = SequentialAdapter(net)
        sampled = AdapterDownstream(adapter, None, later_sites(adapter, None), Contexts(torch.from_numpy(x)))
        assert _c2(sampled, x, y) == _c2(SequentialDownstream(net), x, y), name
