"""Exact segment crossings of convolutional and residual ReLU networks (polyaudit.interventions.module_walk)
against a brute-force count on a fine grid, computed with plain forward hooks on the original net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.interventions.module_walk import ModuleWalker, segment_crossings

GRID = 2**15  # intervals of the brute-force grid


class Residual(nn.Module):
    """A torchvision-style basic block: conv-BN-relu-conv-BN, plus the input, then the SAME in-place
    relu module again (one module, two calls)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def relu_cnn(seed: int, c_in: int, size: int, widths: list[int], strides: list[int], bn: bool,
             residual: bool, leaky: bool) -> nn.Module:
    """A random float64 ReLU CNN with an average-pooled linear readout."""
    g = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    c = c_in
    for w, s in zip(widths, strides, strict=False):
        mods.append(nn.Conv2d(c, w, 3, stride=s, padding=1))
        if bn:
            mods.append(nn.BatchNorm2d(w))
        mods.append(nn.LeakyReLU(0.1) if leaky else nn.ReLU())
        c = w
    if residual:
        mods.append(Residual(c))
    mods += [nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(), nn.LazyLinear(3)]
    net = nn.Sequential(*mods).double().eval()
    net(torch.zeros(1, c_in, size, size, dtype=torch.float64))  # materialise the lazy readout
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64)
                               / m.weight[0].numel() ** 0.5)
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g, dtype=torch.float64))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g, dtype=torch.float64))
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g, dtype=torch.float64))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g, dtype=torch.float64))
    return net.eval()


def codes_by_hooks(net: nn.Module, points: torch.Tensor) -> np.ndarray:
    """bool [m, units]: the sign of every ReLU call's input, from forward pre-hooks on `net` itself."""
    got: list[torch.Tensor] = []

    def hook(_m: nn.Module, args: tuple) -> None:
        got.append(args[0].reshape(args[0].shape[0], -1) > 0)

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    try:
        with torch.no_grad():
            net(points)
    finally:
        for h in handles:
            h.remove()
    return torch.cat(got, dim=1).numpy()


cnns = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31 - 1),
    "c_in": st.integers(1, 2),
    "size": st.integers(3, 7),
    "widths": st.lists(st.integers(1, 5), min_size=1, max_size=3),
    "strides": st.lists(st.sampled_from([1, 1, 2]), min_size=3, max_size=3),
    "bn": st.booleans(),
    "residual": st.booleans(),
    "leaky": st.sampled_from([False, False, True]),
})


@settings(max_examples=30, deadline=None)
@given(cnns)
def test_exact_crossings_of_random_cnns_match_a_fine_grid(spec: dict) -> None:
    net = relu_cnn(**spec)
    rng = np.random.default_rng(spec["seed"])
    x0, x1 = 2.0 * rng.standard_normal((2, spec["c_in"], spec["size"], spec["size"]))
    walk = ModuleWalker(net).walk(x0, x1)
    t = segment_crossings(net, x0, x1)  # the public API takes the same route
    np.testing.assert_array_equal(t, walk.t)
    assert np.all((t > 0) & (t < 1)) and np.all(np.diff(t) >= 0)
    ts = torch.linspace(0.0, 1.0, GRID + 1, dtype=torch.float64)[:, None, None, None]
    a, b = torch.from_numpy(x0), torch.from_numpy(x1)
    codes = codes_by_hooks(net, a + ts * (b - a))
    flips_per_unit = np.abs(np.diff(codes.astype(np.int8), axis=0)).sum(axis=0)
    assert t.size == int(flips_per_unit.sum())
    widths = [int(c.shape[1]) for c in np.split(codes[:1], np.cumsum(walk_units(net, x0))[:-1], axis=1)]
    offsets = np.cumsum([0, *widths])
    found = np.bincount(offsets[walk.layer] + walk.unit, minlength=codes.shape[1])
    np.testing.assert_array_equal(found, flips_per_unit)  # the same units, as often


def walk_units(net: nn.Module, x: np.ndarray) -> list[int]:
    """Units of every ReLU call, in call order."""
    walker = ModuleWalker(net)
    walker.outputs(x[None])
    return [int(r.shape[1]) for r in walker.records]


def test_walks_through_a_written_site_see_only_later_units() -> None:
    net = relu_cnn(7, 1, 6, [3, 4], [1, 2, 1], bn=True, residual=True, leaky=False)
    x = np.random.default_rng(0).standard_normal((1, 6, 6))
    walker = ModuleWalker(net, write_call=0, write_tap="output", first_call=1)
    codes, _ = walker.outputs(x[None].repeat(2, 0))
    full, _ = ModuleWalker(net).outputs(x[None])
    assert codes.shape[1] == full.shape[1] - 3 * 36  # the first ReLU's 3 x 6 x 6 units are not counted
    h0, h1 = np.random.default_rng(1).standard_normal((2, 3 * 36))
    walk = walker.walk(h0, h1, context=x)
    # brute force: the same writes on a grid of points along h0 -> h1
    ts = np.linspace(0, 1, 4097)
    pts = h0 + ts[:, None] * (h1 - h0)
    grid, _ = walker.outputs(x[None].repeat(len(ts), 0), pts)
    assert walk.t.size == int(np.abs(np.diff(grid.astype(np.int8), axis=0)).sum()) > 0


def test_max_pooling_and_hidden_functional_relus_are_refused() -> None:
    with pytest.raises(PolyauditError, match="MaxPool2d"):
        ModuleWalker(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)))

    class Hidden(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.relu, self.out = nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Linear(4 * 16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.conv(x) - 0.1).flatten(1)) + self.relu(x).sum()

    rng = np.random.default_rng(0)
    x0, x1 = rng.standard_normal((2, 1, 6, 6))
    with pytest.raises(PolyauditError, match="not affine"):
        ModuleWalker(Hidden().double()).walk(x0, x1)


def test_walking_segments_side_by_side_equals_walking_them_one_by_one() -> None:
    net = relu_cnn(11, 2, 5, [4, 3], [1, 2, 1], bn=True, residual=True, leaky=False)
    rng = np.random.default_rng(3)
    x0, x1 = rng.standard_normal((2, 7, 2, 5, 5))
    x1[2] = x0[2]  # an empty segment rides along
    walker = ModuleWalker(net)
    together = walker.walk_many(x0, x1, batch=4)  # two batches, segments finishing at different times
    for a, b, w in zip(x0, x1, together, strict=True):
        alone = walker.walk(a, b)
        np.testing.assert_array_equal(w.t, alone.t)
        np.testing.assert_array_equal(w.unit, alone.unit)
        assert w.n_pieces == alone.n_pieces
    assert together[2].t.size == 0 and max(w.t.size for w in together) > 10
