"""The frozen-code control of C2/C3 (`Downstream.frozen`): the output at a point with every downstream
unit kept in the state it has at an anchor. Exact evaluators give the anchor polytope's affine map;
the hook evaluator's linearization agrees with them on ReLU nets; inert boundaries leave no trace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv_crossings import cnns, relu_cnn
from torch import nn

from polyaudit.analyses.alignment import fd_probes, linearized, same_output
from polyaudit.analyses.outputs import log_softmax
from polyaudit.analyses.polylines import summarize_paths
from polyaudit.interventions.downstream import (
    AdapterDownstream,
    Contexts,
    SequentialDownstream,
    later_sites,
)
from polyaudit.interventions.module_walk import ModuleWalker, segment_crossings
from polyaudit.models.sequential import SequentialAdapter


def relu_mlp(seed: int, d: int = 4, width: int = 12, depth: int = 2) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    d_in = d
    for _ in range(depth):
        lin = nn.Linear(d_in, width).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(width, d_in, generator=g, dtype=torch.float64) / d_in**0.5)
            lin.bias.copy_(0.3 * torch.randn(width, generator=g, dtype=torch.float64))
        mods += [lin, nn.ReLU()]
        d_in = width
    head = nn.Linear(d_in, 3).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(3, d_in, generator=g, dtype=torch.float64))
    return nn.Sequential(*mods, head).eval()


def affine_map_at(net: nn.Sequential, anchor: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Logits at `point` with every ReLU's mask taken from `anchor` (numpy, layer by layer)."""
    a, p = anchor.copy(), point.copy()
    for m in net:
        if isinstance(m, nn.Linear):
            w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
            a, p = a @ w.T + b, p @ w.T + b
        else:
            mask = a > 0
            a, p = a * mask, p * mask
    return p


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_sequential_frozen_outputs_are_the_anchor_polytopes_affine_map(seed: int) -> None:
    net = relu_mlp(seed)
    rng = np.random.default_rng(seed)
    anchors, points = rng.standard_normal((6, 4)), 3 * rng.standard_normal((6, 4))
    got = SequentialDownstream(net).frozen(anchors, points, None, np.zeros((6, 3)), np.ones(6))
    want = log_softmax(np.stack([affine_map_at(net, a, p) for a, p in zip(anchors, points, strict=True)]))
    np.testing.assert_allclose(got, want, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(cnns)
def test_module_walker_frozen_outputs_are_affine_and_real_until_a_crossing(spec: dict) -> None:
    net = relu_cnn(**spec)
    rng = np.random.default_rng(spec["seed"])
    shape = (spec["c_in"], spec["size"], spec["size"])
    a, d = rng.standard_normal(shape), rng.standard_normal(shape)
    walker = ModuleWalker(net)
    out = walker.frozen(np.stack([a, a, a]), np.stack([a + 1e-300 * d, a + d, a + 2 * d]))
    with torch.no_grad():
        real_a = net(torch.from_numpy(a[None])).numpy().ravel()
    np.testing.assert_allclose(out[0], real_a, atol=1e-9)  # at the anchor: its own output
    np.testing.assert_allclose(out[2] - out[1], out[1] - out[0], atol=1e-9)  # affine along the ray
    t = segment_crossings(net, a, a + d)
    near = a + 0.5 * (t[0] if t.size else 1.0) * d  # before the first crossing the codes are the anchor's
    frozen_near = walker.frozen(a[None], near[None])[0]
    with torch.no_grad():
        np.testing.assert_allclose(frozen_near, net(torch.from_numpy(near[None])).numpy().ravel(), atol=1e-9)


def test_fd_probes_and_linearization_recover_a_linear_model() -> None:
    rng = np.random.default_rng(0)
    anchors, points = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    probes, frac = fd_probes(anchors, points, np.full(5, 0.16))
    dist = np.linalg.norm(points - anchors, axis=1)
    np.testing.assert_allclose(np.linalg.norm(probes - anchors, axis=1), 0.01, rtol=1e-12)  # FD_STEP * reach
    np.testing.assert_allclose(frac, 0.01 / dist)
    w = rng.standard_normal((3, 4))
    logits = lambda x: x @ w  # noqa: E731
    got = linearized(log_softmax(logits(anchors)), log_softmax(logits(probes)), frac)
    np.testing.assert_allclose(got, log_softmax(logits(points)), atol=1e-9)
    same = fd_probes(anchors, anchors, np.ones(5))  # a point at its anchor: fraction 0, its own output
    assert np.all(same[1] == 0)
    np.testing.assert_allclose(linearized(log_softmax(logits(anchors)), log_softmax(logits(anchors)), same[1]),
                               log_softmax(logits(anchors)))


def test_the_linearized_control_equals_the_exact_one_on_a_relu_net() -> None:
    """Through the adapter's hooks (outputs only) the control is a forward difference; on a ReLU
    net it is the anchor polytope's map wherever no boundary lies between the anchor and its probe."""
    net = relu_mlp(3)
    rng = np.random.default_rng(3)
    anchors, points = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
    reach = np.full(40, 0.2)
    adapter = SequentialAdapter(net)
    hooks = AdapterDownstream(adapter, None, later_sites(adapter, None), Contexts(torch.from_numpy(anchors)))
    at_anchor = hooks.outputs(anchors, None)[1]
    exact = SequentialDownstream(net).frozen(anchors, points, None, at_anchor, reach)
    approx = hooks.frozen(anchors, points, None, at_anchor, reach)
    probes, _ = fd_probes(anchors, points, reach)
    clear = np.array([segment_crossings(net, a, q).size == 0 for a, q in zip(anchors, probes, strict=True)])
    assert clear.mean() > 0.8
    np.testing.assert_allclose(approx[clear], exact[clear], atol=1e-7)
    assert hooks.work.control_evaluations == 40  # one probe per anchor and direction


def test_inert_boundaries_leave_the_control_equal_to_the_real_change() -> None:
    """Half the units are always on (no boundary on the data), the other half are cut by the paths
    but have output weight 0: every control JS equals the real JS and every kink is 0, through the
    exact walk (anchored control) and through the hooks (per-step linearization) alike."""
    net = relu_mlp(5, depth=1)
    with torch.no_grad():
        net[0].bias[:6] = 10.0
        net[2].weight[:, 6:] = 0.0
    rng = np.random.default_rng(5)
    pts = np.stack([np.linspace(a, b, 9) for a, b in rng.standard_normal((12, 2, 4))])
    adapter = SequentialAdapter(net)
    for down in (SequentialDownstream(net),
                 AdapterDownstream(adapter, None, later_sites(adapter, None), Contexts(torch.from_numpy(pts[:, 0])))):
        w = summarize_paths(down, pts, anchors=(0, 8), kinks=True)
        assert w.counts.sum() > 0 and w.n_control > 0
        assert w.js_frozen.shape[0] == (2 if down.exact else 1)  # anchored (exact) or per step (hooks)
        assert np.array_equal(w.js_frozen, np.broadcast_to(w.js_step, w.js_frozen.shape))
        assert w.js_kink is not None and not w.js_kink.any()


@pytest.mark.parametrize("exact", [True, False])
def test_same_output_tolerates_rounding_only(exact: bool) -> None:
    """Exact evaluators compute in float64, linearized ones may come from a float32 model."""
    a = log_softmax(np.random.default_rng(0).standard_normal((4, 5)))
    rounded = a * (1 + 1e-13) if exact else a.astype(np.float32)
    assert same_output(a, rounded, exact).all()
    assert not same_output(a, a + np.array([0.0, 0.0, 0.0, 0.0, 1e-3]), exact).any()


def test_boundary_induced_change_per_unit_length_does_not_grow_with_the_path() -> None:
    """C2's contrast: boundaries every 0.1 along x0, each bending the logit the same small amount.
    A path twice as long crosses twice as many (version 1 compared those totals) at the same rate per
    unit length, and its steps, twice as long, do not inflate each crossing's gap."""
    from polyaudit.analyses.c2 import boundary_rate

    b = 0.1 * np.arange(1, 21)
    first = nn.Linear(1, 20).double()
    head = nn.Linear(20, 2).double()
    with torch.no_grad():
        first.weight.fill_(1.0)
        first.bias.copy_(torch.from_numpy(-b))
        head.weight.copy_(torch.from_numpy(np.stack([np.zeros(20), np.full(20, 0.01)])))
        head.bias.zero_()
    net = nn.Sequential(first, nn.ReLU(), head).eval()
    paths = np.stack([np.linspace(0.05, 1.05, 11), np.linspace(0.05, 2.05, 11)])[:, :, None]
    w = summarize_paths(SequentialDownstream(net), paths, kinks=True)
    assert w.counts.sum(axis=1).tolist() == [10, 20]
    rate = boundary_rate(w)
    assert 0.8 < rate[1] / rate[0] < 1.25
