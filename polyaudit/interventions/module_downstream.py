"""Exact downstream evaluation of convolutional ReLU networks (C2, C3 on CNNs and ResNets).

`ModuleDownstream` is the `Downstream` of `polyaudit.analyses.polylines` for any model whose
nonlinearities are all ReLU modules and whose other layers are affine in eval mode (Conv, BatchNorm,
average pooling, Linear, residual additions): codes and outputs come from a gated float64 copy of
the WHOLE model (`polyaudit.interventions.module_walk.ModuleWalker`), with the point written into the
site (the input, a ReLU's output or its input); crossings along a segment are EXACT. Codes count
every unit of every feature map downstream of the site (all channels at all positions: the
network's own polytope), not only the positions a `pos=` selector reads. The frozen-code control
(a point's output with every unit's state kept from an anchor) is the first piece of the walk
anchor -> point continued to the point (`ModuleWalker.frozen`): exact.

Units before the site see the same input in both rows of a walk, so they never cross; the walk
still runs them (a ResNet's skip path carries them past the site).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from polyaudit.analyses.outputs import DISTRIBUTION
from polyaudit.errors import PolyauditError
from polyaudit.interventions.downstream import Contexts, CountsWork, Work
from polyaudit.interventions.module_walk import ModuleWalker
from polyaudit.models.base import Adapter, Site


class ModuleDownstream(CountsWork):
    """Exact evaluator of a ReLU network of any module structure (see the module docstring)."""

    exact = True
    codes_exact = True
    space = DISTRIBUTION

    def __init__(self, adapter: Adapter, site: Site | None, contexts: Contexts, *, max_rows: int = 256) -> None:
        if site is None:
            call, tap, first = None, "output", 0
        elif site.kind == "resid":
            call, tap, first = site.layer, "output", site.layer + 1
        elif site.kind == "mlp_pre":
            call, tap, first = site.layer, "input", site.layer
        else:
            raise PolyauditError(f"exact walks write into ReLU inputs or outputs, not {site.kind}", site=site.name)
        self.walker = ModuleWalker(adapter.model, write_call=call, write_tap=tap, first_call=first)
        self.site = site
        self.contexts = contexts
        self.inputs = contexts.inputs.detach().cpu().double().numpy()
        self.max_rows = max_rows
        self.work = Work()
        self.n_units = -1

    def frozen(self, anchors: np.ndarray, points: np.ndarray, ctx: np.ndarray | None, at_anchor: np.ndarray,
               reach: np.ndarray) -> np.ndarray:
        """Exact frozen-code outputs (log-probabilities) at `points`: one gated float64 forward of the
        rows [anchors, points] (2 single-point forward equivalents per point)."""
        t0 = time.perf_counter()
        p0, p1 = np.asarray(anchors, dtype=np.float64), np.asarray(points, dtype=np.float64)
        if self.site is None:
            shape = self.inputs.shape[1:]
            out = self.walker.frozen(p0.reshape(-1, *shape), p1.reshape(-1, *shape))
        else:
            if ctx is None:
                raise PolyauditError("points written into a site need the inputs (contexts) they belong to")
            out = self.walker.frozen(p0, p1, contexts=self.inputs[np.asarray(ctx, dtype=np.int64)])
        self.work.control_evaluations += 2 * p0.shape[0]
        self.work.seconds += time.perf_counter() - t0
        return torch.log_softmax(torch.from_numpy(out), dim=-1).numpy()

    def _inputs(self, points: np.ndarray, ctx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        if self.site is None:
            return points.reshape(points.shape[0], *self.inputs.shape[1:]), None
        if ctx is None:
            raise PolyauditError("points written into a site need the inputs (contexts) they belong to")
        return self.inputs[np.asarray(ctx, dtype=np.int64)], points

    def outputs(self, points: np.ndarray, ctx: np.ndarray | None,
                keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        pts = np.asarray(points, dtype=np.float64)
        k = np.ones(pts.shape[0], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
        codes, logps = [], []
        for start in range(0, pts.shape[0], self.max_rows):
            sl = slice(start, start + self.max_rows)
            inputs, rows = self._inputs(pts[sl], None if ctx is None else np.asarray(ctx)[sl])
            c, out = self.walker.outputs(inputs, rows)
            codes.append(c)
            logps.append(torch.log_softmax(torch.from_numpy(out[k[sl]]), dim=-1).numpy())
        self.work.n_rows += pts.shape[0]
        self.work.seconds += time.perf_counter() - t0
        result = np.concatenate(codes), np.concatenate(logps)
        self.n_units = int(result[0].shape[1])
        return result

    def segments(self, p0: np.ndarray, p1: np.ndarray, ctx: np.ndarray | None) -> list[np.ndarray]:
        """Crossings of many segments p0[s] -> p1[s] (`ctx[s]` their inputs), walked side by side."""
        t0 = time.perf_counter()
        if self.site is None:
            shape = self.inputs.shape[1:]
            walks = self.walker.walk_many(p0.reshape(-1, *shape), p1.reshape(-1, *shape))
        else:
            if ctx is None:
                raise PolyauditError("a walk at a site needs the input (context) it is written into")
            walks = self.walker.walk_many(p0, p1, contexts=self.inputs[np.asarray(ctx, dtype=np.int64)])
        self.work.segment_evaluations += sum(w.n_evaluations for w in walks)
        self.work.seconds += time.perf_counter() - t0
        return [w.t for w in walks]

    def segment(self, p0: np.ndarray, p1: np.ndarray, ctx: int | None) -> np.ndarray:
        t0 = time.perf_counter()
        if self.site is None:
            shape = self.inputs.shape[1:]
            walk = self.walker.walk(np.reshape(p0, shape), np.reshape(p1, shape))
        else:
            if ctx is None:
                raise PolyauditError("a walk at a site needs the input (context) it is written into")
            walk = self.walker.walk(p0, p1, context=self.inputs[int(ctx)])
        self.work.segment_evaluations += walk.n_evaluations
        self.work.seconds += time.perf_counter() - t0
        return walk.t


def module_downstream(adapter: Adapter, site: Site | None, contexts: Contexts, *,
                      max_rows: int = 256) -> tuple[Any, str | None]:
    """(ModuleDownstream, None), or (None, why the model cannot be walked exactly)."""
    try:
        return ModuleDownstream(adapter, site, contexts, max_rows=max_rows), None
    except PolyauditError as e:
        return None, str(e)
