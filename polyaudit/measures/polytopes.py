"""Spline codes, Hamming geometry and exact boundary crossings of piecewise-linear networks.

Black, Sharkey et al. 2022 ("Interpreting Neural Networks through the Polytope Lens", sec. 2): a
ReLU network is affine on each polytope of its input space, and a polytope is named by its SPLINE
CODE, the on/off state of every unit, i.e. the sign of each pre-activation. Codes of several layers
concatenate (`concat_codes`). For smooth nonlinearities (GELU, SiLU) the sign of the pre-activation
is only an approximate code: the network is not affine between sign changes.

- `spline_codes` / `pack_codes` / `unpack_codes`: codes as bool, and 8 codes per byte for storage.
- `hamming`: number of differing units between every pair of codes, computed as ONE float32 matrix
  product of +-1 codes (BLAS): H = (d - S_a S_b^T) / 2, with the scale and offset folded into the
  operands; exact while d < 2**22.
- `segment_crossings`: every t in (0, 1) where the segment x0 + t (x1 - x0) crosses a unit's
  boundary in a ReLU / leaky-ReLU network, EXACT (no grid): on each piece of the segment the
  network is affine, so every pre-activation is a + t b and the next crossing is the smallest root
  ahead; the walk flips that unit and recomputes only the layers after it. Networks that are not an
  `nn.Sequential` of Linear layers (CNNs, ResNets) walk through `polyaudit.interventions.module_walk`.

`segment_crossings` is the one function here that reads a torch module: it extracts float64 numpy
weights (`affine_layers`, which recognises layers by class name) and walks the segment in numpy
(`walk_segment`); this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.errors import PolyauditError

_MAX_BITS_FLOAT32 = 1 << 22  # half-integers up to 2**23 are exact in float32 sums


def spline_codes(preacts: np.ndarray) -> np.ndarray:
    """bool [n, d]: True where the pre-activation is positive (the unit is on)."""
    a = np.asarray(preacts)
    if a.ndim != 2:
        raise PolyauditError(f"spline_codes needs pre-activations [n, d], got shape {a.shape}")
    return a > 0


def concat_codes(codes: Sequence[np.ndarray]) -> np.ndarray:
    """Multi-layer codes: the per-layer codes of the same samples side by side, bool [n, sum d]."""
    if not codes:
        raise PolyauditError("concat_codes needs at least one layer of codes")
    n = {c.shape[0] for c in codes}
    if len(n) != 1:
        raise PolyauditError(f"layers disagree on the number of samples: {sorted(n)}")
    return np.concatenate([np.asarray(c, dtype=bool) for c in codes], axis=1)


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """uint8 [n, ceil(d / 8)]: 8 codes per byte (numpy.packbits, big bit order)."""
    c = np.asarray(codes, dtype=bool)
    if c.ndim != 2:
        raise PolyauditError(f"pack_codes needs codes [n, d], got shape {c.shape}")
    return np.packbits(c, axis=1)


def unpack_codes(packed: np.ndarray, d: int) -> np.ndarray:
    """Inverse of `pack_codes`: bool [n, d]."""
    p = np.asarray(packed, dtype=np.uint8)
    if p.ndim != 2 or p.shape[1] != (d + 7) // 8:
        raise PolyauditError(f"packed codes of shape {p.shape} cannot hold {d} bits per row")
    return np.unpackbits(p, axis=1, count=d).astype(bool)


def _operand(codes: np.ndarray, on: float, off: float, last: float) -> np.ndarray:
    """float32 [n, d + 1]: `on` where a code is set, `off` where not, and a last column `last`."""
    c = np.asarray(codes)
    if c.dtype != bool:
        c = c > 0
    n, d = c.shape
    out = np.empty((n, d + 1), dtype=np.float32)
    body = out[:, :d]
    np.multiply(c, np.float32(on - off), out=body, casting="unsafe")
    body += np.float32(off)
    out[:, d] = last
    return out


def hamming(codes_a: np.ndarray, codes_b: np.ndarray | None = None) -> np.ndarray:
    """int32 [n_a, n_b]: number of units whose state differs, for every pair of rows.

    ONE BLAS matrix product: with s = +-1 codes, H = (d - s_a . s_b) / 2 = (-s_a / 2) . s_b + d / 2.
    The factor and the offset ride in the operands (codes as +-1/2 with a last column d/2 on one side,
    +-1 with a last column 1 on the other), so the product IS the distance matrix: every partial sum
    is a multiple of 1/2 below 2**23, exact in float32 (d < 2**22). `codes_b` None: all pairs
    within `codes_a`.
    """
    a = np.asarray(codes_a)
    b = a if codes_b is None else np.asarray(codes_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise PolyauditError(
            f"hamming needs codes [n_a, d] and [n_b, d] with the same d, got {a.shape} and {b.shape}"
        )
    d = a.shape[1]
    if d >= _MAX_BITS_FLOAT32:
        raise PolyauditError(f"hamming supports codes of fewer than 2**22 bits, got {d}")
    left = _operand(a, -0.5, 0.5, d / 2.0)
    right = _operand(b, 1.0, -1.0, 1.0)
    return (left @ right.T).astype(np.int32)  # the one O(n_a n_b d) step


# --- exact crossings along a segment ---------------------------------------------------------
@dataclass(frozen=True)
class AffineLayer:
    """z = W x + c followed by an elementwise piecewise-linear activation with slope 1 for z > 0
    and `negative_slope` for z < 0 (0 for ReLU)."""

    weight: np.ndarray  # float64 [d_out, d_in]
    bias: np.ndarray  # float64 [d_out]
    negative_slope: float = 0.0


@dataclass(frozen=True)
class Crossings:
    """Every crossing of a walk, in order: position t, layer and unit that flipped."""

    t: np.ndarray  # float64 [k], sorted, in (0, 1)
    layer: np.ndarray  # int [k]
    unit: np.ndarray  # int [k]
    n_pieces: int  # affine pieces walked (k + 1)
    n_evaluations: int  # network evaluations spent, in single-point forward equivalents


def _is(module: Any, *names: str) -> bool:
    """isinstance(module, torch.nn.<name>) for any of `names`, read from the class hierarchy so
    this module never imports torch."""
    return any(c.__name__ in names and c.__module__.startswith("torch.nn") for c in type(module).__mro__)


def affine_layers(net: Any) -> list[AffineLayer]:
    """float64 layers of a piecewise-linear `nn.Sequential` (nested Sequentials are flattened).

    Accepts Linear, ReLU, LeakyReLU, PReLU with one parameter, and modules that are the identity in
    eval mode (Identity, Dropout, Flatten on flat inputs). Consecutive Linear layers are composed;
    Linear layers after the last activation are dropped (they hold no boundaries).
    """
    if not _is(net, "Sequential"):
        raise PolyauditError(f"segment_crossings needs an nn.Sequential, got {type(net).__name__}")
    leaves = [m for m in net.modules() if not _is(m, "Sequential")]
    layers: list[AffineLayer] = []
    w: np.ndarray | None = None
    c: np.ndarray | None = None
    for i, m in enumerate(leaves):
        if _is(m, "Linear"):
            mw = m.weight.detach().cpu().double().numpy()
            mb = (m.bias.detach().cpu().double().numpy() if m.bias is not None
                  else np.zeros(mw.shape[0]))
            w, c = (mw, mb) if w is None or c is None else (mw @ w, mw @ c + mb)
        elif _is(m, "ReLU", "LeakyReLU", "PReLU"):
            if w is None or c is None:
                raise PolyauditError(
                    f"segment_crossings: activation {type(m).__name__} at leaf {i} has no Linear before it"
                )
            slope = negative_slope(m)
            layers.append(AffineLayer(w, c, slope))
            w = c = None
        elif _is(m, "Identity", "Dropout", "Flatten"):
            continue
        else:
            raise PolyauditError(
                f"segment_crossings needs Linear + ReLU/LeakyReLU layers (a piecewise-linear net); "
                f"leaf {i} is {type(m).__name__}: use the approximate (sampled) crossings instead"
            )
    if not layers:
        raise PolyauditError("segment_crossings: the network has no ReLU-like activation")
    return layers


def negative_slope(m: Any) -> float:
    """The slope of a ReLU-like module left of 0: ReLU 0, LeakyReLU its slope, a single-slope PReLU
    its weight (a PReLU with one slope per channel is refused)."""
    if _is(m, "ReLU"):
        return 0.0
    if _is(m, "LeakyReLU"):
        return float(m.negative_slope)
    if m.weight.numel() != 1:
        raise PolyauditError("exact crossings support PReLU with a single shared slope only")
    return float(m.weight.detach().reshape(()).item())


def segment_crossings(net: Any, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Sorted float64 t in (0, 1) at which the segment x0 + t (x1 - x0) crosses a boundary of the
    ReLU / leaky-ReLU `nn.Sequential` `net` of Linear layers (one entry per unit flip), exact: the
    weights are read once (`affine_layers`) and the segment walked in numpy (`walk_segment`).
    Networks of other modules (CNNs, eval BatchNorm, average pooling, residual additions) walk
    through `polyaudit.interventions.module_walk.segment_crossings`."""
    return walk_segment(affine_layers(net), x0, x1).t


def _right_on(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Unit state just to the right of t on the current piece, pre-activation z = a + t b: the
    sign of z, or of its slope b where z is zero up to rounding."""
    z = a + t * b
    tol = 1e-12 * (np.abs(a) + np.abs(t * b))
    return (z > tol) | ((z >= -tol) & (b > 0))


def _roots(a: np.ndarray, b: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Where each unit next changes sign on the current piece (inf when it does not)."""
    leaving = (on != (b > 0)) & (b != 0)
    return np.divide(-a, b, out=np.full(a.shape, np.inf), where=leaving)


def walk_segment(
    layers: Sequence[AffineLayer], x0: np.ndarray, x1: np.ndarray, max_pieces: int = 10_000_000
) -> Crossings:
    """Walk x0 -> x1 piece by piece through piecewise-linear `layers` (float64).

    On a piece every pre-activation is affine in t, z_l(t) = a_l + t b_l: propagate the pair (a, b)
    with the piece's unit states, take the smallest root ahead over all units, flip that unit, and
    recompute (a, b) and states for the layers after it only (its own layer's inputs are
    unchanged). States at a crossing are the right limits (sign of z, or of its slope where z is 0),
    so a unit never flips twice at the same point.
    """
    p0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    p1 = np.asarray(x1, dtype=np.float64).reshape(-1)
    if p0.shape != p1.shape or p0.shape[0] != layers[0].weight.shape[1]:
        raise PolyauditError(
            f"segment ends of shapes {p0.shape} and {p1.shape} do not fit a network with "
            f"input width {layers[0].weight.shape[1]}"
        )
    n_layers = len(layers)
    a: list[np.ndarray] = [np.empty(0)] * n_layers
    b: list[np.ndarray] = [np.empty(0)] * n_layers
    on: list[np.ndarray] = [np.empty(0, dtype=bool)] * n_layers
    roots: list[np.ndarray] = [np.empty(0)] * n_layers
    first_roots = np.empty(n_layers)
    a[0] = layers[0].weight @ p0 + layers[0].bias
    b[0] = layers[0].weight @ (p1 - p0)
    evaluations = 0.0  # single-point forward equivalents: (a, b) through a layer = 2 / n_layers

    def propagate(start: int, t: float) -> None:
        nonlocal evaluations
        for layer in range(start, n_layers):
            if layer > 0:
                prev, here = layers[layer - 1], layers[layer]
                slope = (on[layer - 1] if prev.negative_slope == 0.0
                         else np.where(on[layer - 1], 1.0, prev.negative_slope))
                a[layer] = here.weight @ (a[layer - 1] * slope) + here.bias
                b[layer] = here.weight @ (b[layer - 1] * slope)
            on[layer] = _right_on(a[layer], b[layer], t)
            roots[layer] = _roots(a[layer], b[layer], on[layer])
            first_roots[layer] = roots[layer].min(initial=np.inf)
        evaluations += 2 * (n_layers - start) / n_layers

    propagate(0, 0.0)
    ts: list[float] = []
    ls: list[int] = []
    us: list[int] = []
    for _ in range(max_pieces):
        layer = int(np.argmin(first_roots))
        t = float(first_roots[layer])
        if not t < 1.0:
            break
        unit = int(np.argmin(roots[layer]))
        ts.append(t)
        ls.append(layer)
        us.append(unit)
        on[layer][unit] = not on[layer][unit]
        roots[layer][unit] = np.inf  # after the flip its sign agrees with its slope: no root ahead
        first_roots[layer] = roots[layer].min(initial=np.inf)
        if layer + 1 < n_layers:
            propagate(layer + 1, t)
    else:
        raise PolyauditError(f"segment walk did not finish within {max_pieces} pieces")
    t_arr = np.asarray(ts, dtype=np.float64)
    keep = t_arr > 0.0  # a root exactly at 0 is a state, not a crossing inside (0, 1)
    return Crossings(
        t=t_arr[keep],
        layer=np.asarray(ls, dtype=np.int64)[keep],
        unit=np.asarray(us, dtype=np.int64)[keep],
        n_pieces=len(ts) + 1,
        n_evaluations=int(np.ceil(evaluations)),
    )


def codes_along(layers: Sequence[AffineLayer], points: np.ndarray) -> np.ndarray:
    """bool [m, sum d]: spline codes of every layer at each row of `points` (float64 forward)."""
    h = np.asarray(points, dtype=np.float64)
    out = []
    for layer in layers:
        z = h @ layer.weight.T + layer.bias
        out.append(z > 0)
        h = np.where(z > 0, z, layer.negative_slope * z)
    return np.concatenate(out, axis=1)
