"""Exact boundary crossings of ANY torch module built of affine maps and ReLUs (CNNs, ResNets).

Black, Sharkey et al. 2022 (sec. 2): a network whose only nonlinearities are ReLUs is affine on each
polytope named by its spline code. With every unit's on/off state frozen, a convolutional network
(Conv, eval-mode BatchNorm, average pooling, Flatten, Linear, residual additions) is one affine map,
so along a segment x(t) = x0 + t (x1 - x0) every pre-activation is a + t b on the current piece.
`ModuleWalker` finds (a, b) for all units at once by running the float64 copy of the network on the
two rows [x0, x1] with every ReLU replaced by a GATE that multiplies both rows by the same mask (the
units' states just to the right of t): then a = z(row 0) and b = z(row 1) - z(row 0). The next
crossing is the smallest root -a / b ahead over all units; the walk re-runs the gated forward
there and records every unit whose state changed (ties and simultaneous flips included).

What it accepts (checked, else one-line PolyauditError): leaf modules that are affine in eval mode
(`AFFINE`), ReLU / LeakyReLU / single-slope PReLU as gates (a module called several times, like
torchvision's shared `relu`, is one gate per call), and containers whose own forward combines them
affinely (sums, reshapes). MaxPool is piecewise linear, but its pieces are set by which input is
largest, not by a unit's sign: it is refused, so callers fall back to sampled crossings and say so.
A nonlinearity hidden in a container's forward (torch.relu, F.max_pool2d) cannot be seen by module
inspection: the first piece of every walk checks that the gated network is affine (the midpoint of
x0 and x1 must map to the mean of their outputs) and refuses the walk when it is not.

`segment_crossings` here takes any such module: an `nn.Sequential` of Linear layers walks in numpy
(`polyaudit.measures.polytopes.segment_crossings`), anything else through `ModuleWalker`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyaudit.errors import PolyauditError
from polyaudit.measures.polytopes import Crossings, affine_layers, negative_slope, walk_segment

AFFINE_NAMES = (
    "Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Flatten", "Unflatten", "Identity", "Dropout",
    "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "ZeroPad1d", "ZeroPad2d",
    "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
)
GATE_NAMES = ("ReLU", "LeakyReLU", "PReLU")
_REL_TOL = 1e-12  # a pre-activation within this (relative) distance of 0 counts as zero
_AFFINE_TOL = 1e-7  # midpoint check: relative deviation allowed from an affine map


def check_module(net: Any) -> list[str]:
    """Paths of the gate (ReLU-like) modules of `net`; PolyauditError naming the first leaf module
    that is neither a gate nor affine in eval mode."""
    paths: list[str] = []
    for path, m in net.named_modules():
        if len(m._modules):
            continue  # a container: its forward is checked by the affinity test of every walk
        name = type(m).__name__
        if name in GATE_NAMES:
            negative_slope(m)
            paths.append(path)
        elif name.startswith("BatchNorm") and (not m.track_running_stats or m.running_mean is None):
            raise PolyauditError(f"exact crossings need eval-mode BatchNorm with running statistics; {path!r} has none")
        elif name.startswith("MaxPool") or name.startswith("AdaptiveMaxPool"):
            raise PolyauditError(
                f"{path!r} is a {name}: max pooling is piecewise linear, but its pieces are set by which input "
                "is largest, not by a unit's sign, so exact crossings do not cover it (approximate instead)")
        elif name not in AFFINE_NAMES:
            raise PolyauditError(
                f"exact crossings need a network of affine maps and ReLUs; {path!r} is a {name}")
    if not paths:
        raise PolyauditError("exact crossings: the network has no ReLU-like module")
    return paths


def _float64_copy(net: Any) -> Any:
    """A float64 eval-mode deep copy of `net`. A forward wrapped per instance (polyaudit's forward
    clock, which holds thread-locals) is left behind: the copy runs its class's own forward."""
    left: list[tuple[Any, str, Any]] = []
    for m in net.modules():
        for key in [k for k in m.__dict__ if k == "forward" or k.startswith("_polyaudit")]:
            left.append((m, key, m.__dict__.pop(key)))
    try:
        out = copy.deepcopy(net)
    finally:
        for m, key, value in left:
            object.__setattr__(m, key, value)
    return out.double().eval()


@dataclass
class _Write:
    call: int  # the gate call whose input ("input") or output ("output") is replaced
    tap: str
    rows: Any  # torch tensor [rows, ...]: the replacement, one per row of the batch


class _Gate:
    """Stands in for one ReLU module of the float64 copy; every call asks the walker what to do."""

    def __init__(self, walker: ModuleWalker, slope: float) -> None:
        self.walker = walker
        self.slope = slope

    def __call__(self, module: Any, args: Any, output: Any) -> Any:  # a forward hook
        return self.walker._gate(self, args[0])


class ModuleWalker:
    """Gated float64 copy of a ReLU network: codes of every unit at any point, exact walks along
    segments, optionally with a site's activation written in (see the module docstring).

    `write_call` / `write_tap`: the gate call whose output ("output") or input ("input") the points
    are written into (None: the points are the network's inputs). `first_call`: codes and crossings
    count gate calls from this one on (the units downstream of the written site)."""

    def __init__(self, net: Any, *, write_call: int | None = None, write_tap: str = "output",
                 first_call: int = 0) -> None:
        import torch

        check_module(net)
        self.net = _float64_copy(net)
        self.net.requires_grad_(False)
        self._handles = []
        self._pre: dict[int, Any] = {}
        for _path, m in self.net.named_modules():
            if type(m).__name__ in GATE_NAMES and not len(m._modules):
                gate = _Gate(self, negative_slope(m))
                # the gate's forward hook replaces the module's output; the pre-hook saves its input
                # (an in-place ReLU would overwrite it) and applies input writes
                self._handles.append(m.register_forward_pre_hook(self._pre_hook))
                self._handles.append(m.register_forward_hook(gate))
        self.write_call, self.write_tap, self.first_call = write_call, write_tap, first_call
        self._torch = torch
        self._mode = "eval"
        self._t: Any = None
        self.forwards = 0  # gated forwards of the last walk_many batch
        self._calls = 0
        self._saved: Any = None
        self._write: _Write | None = None
        self.records: list[Any] = []
        self.n_units: int | None = None

    # --- the gate --------------------------------------------------------------------------
    def _pre_hook(self, module: Any, args: Any) -> Any:
        z = args[0]
        w = self._write
        if w is not None and w.call == self._calls and w.tap == "input":
            z = w.rows.reshape(z.shape).to(z.dtype)
        self._saved = z.clone()
        return (self._saved.clone(), *args[1:])

    def _gate(self, gate: _Gate, _z_after: Any) -> Any:
        torch = self._torch
        z = self._saved
        k = self._calls
        self._calls += 1
        slope = gate.slope
        if self._mode == "walk":  # rows: S segment starts, S ends (and S midpoints on the first run)
            n_seg = self._t.shape[0]
            flat = z.reshape(z.shape[0], -1)
            a = flat[:n_seg]
            b = flat[n_seg:2 * n_seg] - a
            t = self._t[:, None]
            zt = a + t * b
            tol = _REL_TOL * (a.abs() + t.abs() * b.abs())
            on = (zt > tol) | ((zt >= -tol) & (b > 0))
            if k >= self.first_call:
                self.records.append((a, b, on))
            factor = torch.where(on, 1.0, slope).to(z.dtype)
            reps = z.shape[0] // n_seg
            out = (flat * factor.repeat(reps, 1)).reshape(z.shape)
        else:
            if k >= self.first_call:
                self.records.append(z.reshape(z.shape[0], -1) > 0)
            out = torch.where(z > 0, z, slope * z)
        w = self._write
        if w is not None and w.call == k and w.tap == "output":
            out = w.rows.reshape(out.shape).to(out.dtype)
        return out

    def _run(self, inputs: Any, write_rows: Any, mode: str, t: Any = None) -> Any:
        self._mode, self._t, self._calls, self.records = mode, t, 0, []
        self._write = (None if self.write_call is None or write_rows is None
                       else _Write(self.write_call, self.write_tap, write_rows))
        try:
            with self._torch.inference_mode():
                return self.net(inputs)
        finally:
            self._write = None

    # --- public ----------------------------------------------------------------------------
    def outputs(self, inputs: Any, points: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(codes bool [m, n_units] of the counted gate calls, network output float64 [m, ...]) for
        a batch of inputs [m, ...] (with `points` [m, ...] written at the site when it has one)."""
        torch = self._torch
        x = torch.as_tensor(np.asarray(inputs, dtype=np.float64))
        rows = None if points is None else torch.as_tensor(np.asarray(points, dtype=np.float64))
        out = self._run(x, rows, "eval")
        codes = (torch.cat(self.records, dim=1).numpy() if self.records
                 else np.zeros((x.shape[0], 0), dtype=bool))
        self.n_units = int(codes.shape[1])
        return codes, out.reshape(out.shape[0], -1).numpy()

    def frozen(self, starts: np.ndarray, ends: np.ndarray, *, contexts: np.ndarray | None = None,
               batch: int = 64) -> np.ndarray:
        """float64 [S, ...]: the network's output at ends[s] with every gate kept in the state it has
        just past starts[s] towards ends[s] (the first piece of the walk starts[s] -> ends[s],
        continued to its end): the step's output had it crossed no boundary. The network's inputs
        (no site), or the site's activations with `contexts` the inputs they are written into."""
        torch = self._torch
        p0, p1 = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
        if p0.shape != p1.shape:
            raise PolyauditError(f"step ends of shapes {p0.shape} and {p1.shape} differ")
        if self.write_call is not None and (contexts is None or contexts.shape[0] != p0.shape[0]):
            raise PolyauditError("a step at a site needs the input (context) the site's activations belong to")
        out = []
        for lo in range(0, p0.shape[0], batch):
            sl = slice(lo, lo + batch)
            n = p0[sl].shape[0]
            ends_ = np.concatenate([p0[sl], p1[sl]])
            if self.write_call is None:
                inputs, rows = torch.as_tensor(ends_), None
            else:
                assert contexts is not None
                c = np.asarray(contexts[sl], dtype=np.float64)
                inputs, rows = torch.as_tensor(np.concatenate([c, c])), torch.as_tensor(ends_)
            y = self._run(inputs, rows, "walk", torch.zeros(n, dtype=torch.float64))
            out.append(y.reshape(y.shape[0], -1)[n:].numpy())
        return np.concatenate(out) if out else np.zeros((0, 0))

    def walk(self, x0: np.ndarray, x1: np.ndarray, *, context: np.ndarray | None = None,
             max_pieces: int = 1_000_000) -> Crossings:
        """Exact crossings along x0 -> x1: the network's inputs (no site), or the site's activation
        with `context` [...] the input it is written into. States at a crossing are right limits."""
        p0, p1 = np.asarray(x0, dtype=np.float64), np.asarray(x1, dtype=np.float64)
        if p0.shape != p1.shape:
            raise PolyauditError(f"segment ends of shapes {p0.shape} and {p1.shape} differ")
        ctx = None if context is None else np.asarray(context, dtype=np.float64)[None]
        return self.walk_many(p0[None], p1[None], contexts=ctx, max_pieces=max_pieces)[0]

    def walk_many(self, x0: np.ndarray, x1: np.ndarray, *, contexts: np.ndarray | None = None,
                  max_pieces: int = 1_000_000, batch: int = 64) -> list[Crossings]:
        """`walk` for S segments x0[s] -> x1[s] at once: each step is ONE gated forward of every
        segment still under way, each advancing to its own next crossing (the same pieces and
        crossings as S separate walks, for the price of about as many forwards as the longest)."""
        out: list[Crossings] = []
        for lo in range(0, x0.shape[0], batch):
            sl = slice(lo, lo + batch)
            out += self._walk_batch(np.asarray(x0[sl], dtype=np.float64), np.asarray(x1[sl], dtype=np.float64),
                                    None if contexts is None else np.asarray(contexts[sl], dtype=np.float64),
                                    max_pieces)
        return out

    def _walk_batch(self, p0: np.ndarray, p1: np.ndarray, ctx: np.ndarray | None,
                    max_pieces: int) -> list[Crossings]:
        torch = self._torch
        n_seg = p0.shape[0]
        if p0.shape != p1.shape:
            raise PolyauditError(f"segment ends of shapes {p0.shape} and {p1.shape} differ")
        if self.write_call is not None and (ctx is None or ctx.shape[0] != n_seg):
            raise PolyauditError("a walk at a site needs the input (context) the site's activations belong to")

        def batch(idx: np.ndarray, mid: bool) -> tuple[Any, Any]:
            ends = [p0[idx], p1[idx]] + ([0.5 * (p0[idx] + p1[idx])] if mid else [])
            if self.write_call is None:
                return torch.as_tensor(np.concatenate(ends)), None
            assert ctx is not None
            c = ctx[idx]
            return torch.as_tensor(np.concatenate([c] * len(ends))), torch.as_tensor(np.concatenate(ends))

        active = np.arange(n_seg)
        t = np.zeros(n_seg)
        inputs, rows = batch(active, mid=True)
        out = self._run(inputs, rows, "walk", torch.zeros(n_seg, dtype=torch.float64))
        self._check_affine(out, n_seg)
        states = self.records
        found: list[list[tuple[float, int, np.ndarray]]] = [[] for _ in range(n_seg)]
        pieces = np.ones(n_seg, dtype=np.int64)
        forwards = 1
        inputs, rows = batch(active, mid=False)
        while active.size:
            nxt = torch.full((active.size,), np.inf, dtype=torch.float64)
            for a, b, on in states:
                leaving = (on != (b > 0)) & (b != 0)
                r = torch.where(leaving, -a / torch.where(b == 0, 1.0, b), np.inf)
                nxt = torch.minimum(nxt, r.min(dim=1).values)
            going = (nxt < 1.0).numpy()
            if not going.all():  # finished segments leave the batch
                keep = torch.from_numpy(going)
                active, nxt = active[going], nxt[keep]
                states = [(a[keep], b[keep], on[keep]) for a, b, on in states]
                inputs, rows = batch(active, mid=False)
                if not active.size:
                    break
            if int(pieces[active].max()) >= max_pieces:
                raise PolyauditError(f"segment walk did not finish within {max_pieces} pieces")
            self._run(inputs, rows, "walk", nxt)
            forwards += 1
            new = self.records
            changed = torch.zeros(active.size, dtype=torch.bool)
            nxt_np = nxt.numpy()
            for li, ((_, _, old_on), (_, _, new_on)) in enumerate(zip(states, new, strict=True)):
                diff = old_on != new_on
                changed |= diff.any(dim=1)
                seg, unit = (v.numpy() for v in torch.nonzero(diff, as_tuple=True))
                for s_local in np.unique(seg):
                    found[active[s_local]].append((float(nxt_np[s_local]), li, unit[seg == s_local]))
            stalled = (~changed).numpy() | (nxt_np <= t[active])
            if stalled.any():
                raise PolyauditError(f"segment walk stalled at t={float(nxt_np[stalled][0])!r} (no unit changed state)")
            t[active] = nxt_np
            pieces[active] += 1
            states = new
        result = []
        for s in range(n_seg):
            ts = np.array([x[0] for x in found[s] for _ in x[2]], dtype=np.float64)
            lay = np.array([x[1] for x in found[s] for _ in x[2]], dtype=np.int64)
            uni = (np.concatenate([x[2] for x in found[s]]).astype(np.int64) if found[s]
                   else np.zeros(0, dtype=np.int64))
            keep = ts > 0.0
            result.append(Crossings(t=ts[keep], layer=lay[keep], unit=uni[keep], n_pieces=int(pieces[s]),
                                    n_evaluations=2 * int(pieces[s]) + 1))
        self.forwards = forwards
        return result

    def _check_affine(self, out: Any, n_seg: int) -> None:
        """With every gate frozen the network must be affine: f(mid) = (f(x0) + f(x1)) / 2."""
        o = out.reshape(out.shape[0], -1)
        want = 0.5 * (o[:n_seg] + o[n_seg:2 * n_seg])
        scale = float(o[:2 * n_seg].abs().max()) or 1.0
        if float((o[2 * n_seg:] - want).abs().max()) > _AFFINE_TOL * scale:
            raise PolyauditError(
                "the network is not affine between its ReLU modules (a functional nonlinearity such as "
                "torch.relu or F.max_pool2d in a forward method?): exact crossings need ReLU modules")


def module_crossings(net: Any, x0: np.ndarray, x1: np.ndarray) -> Crossings:
    """Exact crossings along the segment x0 -> x1 (the network's input shape, no batch axis)."""
    return ModuleWalker(net).walk(x0, x1)


def segment_crossings(net: Any, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Sorted float64 t in (0, 1) at which the segment x0 + t (x1 - x0) crosses a boundary of the
    ReLU network `net` (one entry per unit flip), exact: an `nn.Sequential` of Linear layers walks in
    numpy, any other module built of affine maps and ReLUs its gated float64 copy, with x0 and x1 in
    the network's input shape."""
    try:
        layers = affine_layers(net)
    except PolyauditError:
        return module_crossings(net, x0, x1).t
    return walk_segment(layers, x0, x1).t
