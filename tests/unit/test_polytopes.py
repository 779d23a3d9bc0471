"""Spline codes, Hamming distances and exact segment crossings (polyaudit.measures.polytopes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.measures.polytopes import (
    affine_layers,
    codes_along,
    concat_codes,
    hamming,
    pack_codes,
    segment_crossings,
    spline_codes,
    unpack_codes,
    walk_segment,
)

GRID = 2**16  # intervals of the brute-force grid


def relu_mlp(seed: int, d_in: int, widths: list[int], negative_slope: float = 0.0) -> nn.Sequential:
    """A random float64 ReLU (or leaky-ReLU) MLP with a 3-way linear readout."""
    g = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    d = d_in
    for w in widths:
        lin = nn.Linear(d, w).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(w, d, generator=g, dtype=torch.float64) / d**0.5)
            lin.bias.copy_(0.5 * torch.randn(w, generator=g, dtype=torch.float64))
        mods += [lin, nn.LeakyReLU(negative_slope) if negative_slope else nn.ReLU()]
        d = w
    mods.append(nn.Linear(d, 3).double())
    return nn.Sequential(*mods).eval()


nets = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31 - 1),
    "d_in": st.integers(2, 32),
    "widths": st.lists(st.integers(2, 32), min_size=1, max_size=4),
    "negative_slope": st.sampled_from([0.0, 0.0, 0.1]),
})


@settings(max_examples=40, deadline=None)
@given(nets)
def test_exact_crossings_match_a_fine_grid(spec: dict) -> None:
    net = relu_mlp(**spec)
    rng = np.random.default_rng(spec["seed"])
    x0, x1 = rng.standard_normal((2, spec["d_in"]))
    walk = walk_segment(affine_layers(net), x0, x1)
    t = segment_crossings(net, x0, x1)
    np.testing.assert_array_equal(t, walk.t)
    assert np.all((t > 0) & (t < 1)) and np.all(np.diff(t) >= 0)
    ts = np.linspace(0.0, 1.0, GRID + 1)
    codes = codes_along(affine_layers(net), x0 + ts[:, None] * (x1 - x0))
    flips_per_unit = np.abs(np.diff(codes.astype(np.int8), axis=0)).sum(axis=0)
    assert t.size == int(flips_per_unit.sum())
    offsets = np.cumsum([0] + [w for w in spec["widths"]])
    found = np.bincount(offsets[walk.layer] + walk.unit, minlength=codes.shape[1])
    np.testing.assert_array_equal(found, flips_per_unit)  # the same units, as often


def test_crossings_sit_where_the_code_changes() -> None:
    net = relu_mlp(3, 4, [16, 16])
    rng = np.random.default_rng(0)
    x0, x1 = 3.0 * rng.standard_normal((2, 4))
    layers = affine_layers(net)
    walk = walk_segment(layers, x0, x1)
    assert walk.t.size > 3 and walk.n_pieces == walk.t.size + 1
    gaps = np.diff(np.concatenate([[0.0], walk.t, [1.0]]))
    eps = 1e-3 * gaps.min()
    before = codes_along(layers, x0 + (walk.t - eps)[:, None] * (x1 - x0))
    after = codes_along(layers, x0 + (walk.t + eps)[:, None] * (x1 - x0))
    changed = before != after
    assert np.all(changed.sum(axis=1) == 1)  # exactly one unit flips at each crossing
    widths = np.cumsum([0, 16])
    np.testing.assert_array_equal(np.argmax(changed, axis=1), widths[walk.layer] + walk.unit)


def test_a_piece_free_segment_has_no_crossings() -> None:
    net = relu_mlp(1, 3, [8])
    x = np.ones(3)
    assert segment_crossings(net, x, x).size == 0


def test_non_piecewise_linear_nets_are_refused() -> None:
    with pytest.raises(PolyauditError, match="GELU"):
        affine_layers(nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1)))
    with pytest.raises(PolyauditError, match="Sequential"):
        affine_layers(nn.Linear(2, 3))


def test_consecutive_linears_compose_and_trailing_ones_are_dropped() -> None:
    a, b = nn.Linear(3, 5).double(), nn.Linear(5, 4).double()
    net = nn.Sequential(a, nn.Dropout(0.5), b, nn.ReLU(), nn.Linear(4, 2).double()).eval()
    (layer,) = affine_layers(net)
    x = np.random.default_rng(0).standard_normal(3)
    with torch.no_grad():
        want = b(a(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(layer.weight @ x + layer.bias, want, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 200), st.integers(0, 2**31 - 1))
def test_hamming_is_a_direct_count(n_a: int, n_b: int, d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.random((n_a, d)) < rng.random(), rng.random((n_b, d)) < 0.5
    direct = (a[:, None, :] != b[None, :, :]).sum(axis=-1)
    h = hamming(a, b)
    assert h.dtype.kind == "i"
    np.testing.assert_array_equal(h, direct)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 30), st.integers(1, 100), st.integers(0, 2**31 - 1))
def test_hamming_is_a_metric(n: int, d: int, seed: int) -> None:
    codes = np.random.default_rng(seed).random((n, d)) < 0.5
    h = hamming(codes)
    assert np.all(np.diag(h) == 0)
    np.testing.assert_array_equal(h, h.T)
    same = (codes[:, None, :] == codes[None, :, :]).all(axis=-1)
    np.testing.assert_array_equal(h == 0, same)  # zero only for identical codes
    assert np.all(h[:, None, :] <= h[:, :, None] + h[None, :, :])  # triangle: d(i,k) <= d(i,j) + d(j,k)


def test_spline_codes_pack_and_concatenate() -> None:
    pre = np.array([[0.5, -1.0, 0.0], [-0.1, 2.0, 3.0]])
    codes = spline_codes(pre)
    np.testing.assert_array_equal(codes, [[True, False, False], [False, True, True]])
    packed = pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.shape == (2, 1)
    np.testing.assert_array_equal(unpack_codes(packed, 3), codes)
    both = concat_codes([codes, codes[:, :1]])
    assert both.shape == (2, 4)
    with pytest.raises(PolyauditError):
        spline_codes(np.zeros(3))
    with pytest.raises(PolyauditError):
        hamming(codes, codes[:, :2])


def test_spline_codes_survive_the_activation_cache_exactly() -> None:
    """The cache stores mlp_pre codes bit-packed from the float32 values: a pre-activation too small
    for float16 (it rounds to 0) keeps its sign in the codes."""
    from polyaudit.store.activations import decode, encode

    x = np.array([[1e4, 1e-12, -1e-12, -3.0, 0.0, 2.0, 5.0, -1.0, 7.0]], dtype=np.float32).repeat(3, axis=0)
    packed = pack_codes(spline_codes(x))
    entry = decode("k", encode("k", x, np.arange(3), None, packed))
    assert entry.samples[0, 1] == 0.0  # float16 with the entry's scale loses it...
    assert entry.codes is not None
    np.testing.assert_array_equal(unpack_codes(entry.codes, x.shape[1]), x > 0)  # ...the codes do not
    assert decode("k", encode("k", x, np.arange(3), None)).codes is None
