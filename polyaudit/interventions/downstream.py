"""Run the rest of a model from a site on activations we choose (C2 and C3 perturb a site).

`polyaudit.interventions.evaluators.make_downstream(loaded, site, contexts)` picks the evaluator:

- `SequentialDownstream` — an `nn.Sequential` with only ReLU-like nonlinearities: the modules after
  the site (`Adapter.modules_after`), in float64. Codes come from `codes_along`, crossings along a segment are EXACT
  (`walk_segment`), outputs from the same float64 modules, and the frozen-code control (a point's
  output with every unit's state kept from an anchor) from a gated float64 forward
  (`ModuleWalker.frozen`): exact.
- `AdapterDownstream` — any other model the adapters know: one batched forward per chunk of points
  with a write hook at the site (the point replaces the activation at the context's kept position)
  and read hooks at every later `mlp_pre` site (the codes, at that position). Crossings are then
  found by dense sampling and bisection (`polyaudit.analyses.polylines`). For causal language models the
  context is cut after the kept position (later tokens cannot affect it); in encoders (BERT) the
  written point also reaches the other positions through attention, but codes and outputs are read
  at the kept position only (the adapter's `capabilities.causal` / `encoder` say which). Causal
  models with a key/value cache (`capabilities.prefix_cache`) compute the prefix once per context
  (`prefix_cache`). Semantic output: the classifier's classes, the next-token distribution
  (causal LMs) or the masked-LM head (encoders) at the kept position. The frozen-code control is
  the rest of the model LINEARIZED at the anchor (`polyaudit.analyses.alignment.linearized`: one
  more point per distinct direction from an anchor, a forward difference over `FD_STEP` of a step,
  through `outputs`); the walks ask it per step (`polyaudit.analyses.polylines`). For a ReLU model
  it equals the frozen codes unless a boundary lies in that first stretch.

- `ModuleDownstream` (`polyaudit.interventions.module_downstream`) — any other ReLU network (CNNs,
  ResNets, the conv autoencoder): a gated float64 copy of the whole model with the point written
  at the site; crossings EXACT. A model it refuses (max pooling, ...) falls back to the hooks, and
  the row says why.

Both count the work they do (`n_rows`, `segment_evaluations`, `control_evaluations`, `seconds`) so
benchmarks can compare analysis time with forward time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polyaudit.analyses.alignment import fd_probes, linearized
from polyaudit.analyses.outputs import DISTRIBUTION, OutputSpace, embedding, unit_rows
from polyaudit.errors import PolyauditError
from polyaudit.interventions.module_walk import ModuleWalker
from polyaudit.measures.polytopes import affine_layers, codes_along, walk_segment
from polyaudit.models.base import Adapter, Site


@dataclass(frozen=True)
class Contexts:
    """The inputs points are written into: token ids [n, L] (+ mask, kept position per row) or
    vector inputs [n, ...] (pos None)."""

    inputs: torch.Tensor
    mask: torch.Tensor | None = None
    pos: np.ndarray | None = None


@dataclass(frozen=True)
class UnitSample:
    """The later units an evaluator reads codes of (`AdapterDownstream.sample_units`): per site,
    sorted unit indices, in site order; `widths` and `sampled` count each site's units."""

    index: dict[Site, torch.Tensor]
    widths: tuple[int, ...]
    sampled: tuple[int, ...]

    @property
    def n_units(self) -> int:
        return sum(self.widths)

    @property
    def n_sampled(self) -> int:
        return sum(self.sampled)

    def strata(self) -> np.ndarray:
        """[n_sampled]: the site (stratum) of each sampled unit."""
        return np.concatenate([np.full(m, i) for i, m in enumerate(self.sampled)])


@dataclass
class Work:
    n_rows: int = 0  # points run through the model
    segment_evaluations: int = 0  # exact walks, in single-point forward equivalents
    control_evaluations: int = 0  # the frozen-code control, in single-point forward equivalents
    seconds: float = 0.0


class CountsWork:
    """The exact evaluators' work counters, read by the claims' notes (`self.work`: a `Work`)."""

    work: Work

    @property
    def segment_evaluations(self) -> int:
        return self.work.segment_evaluations

    @property
    def control_evaluations(self) -> int:
        return self.work.control_evaluations


def output_space(adapter: Adapter) -> OutputSpace | None:
    """What semantic change is measured on (`polyaudit.analyses.outputs`): the output distribution
    of a model with a head; for a headless token model its own representation, by cosine: the
    pooled sentence embedding where the checkpoint names its pooling, else the final hidden state
    at the kept position; None where there is nothing to measure (a vector model without a head)."""
    if adapter.capabilities.output_head:
        return DISTRIBUTION
    if adapter.input_kind != "tokens":
        return None
    if adapter.pooling is not None:
        return embedding(f"the sentence embedding, {adapter.pooling.describe()}")
    return embedding()


class SequentialDownstream(CountsWork):
    """Exact evaluator of a piecewise-linear nn.Sequential (float64 copy)."""

    exact = True
    codes_exact = True
    space = DISTRIBUTION

    def __init__(self, net: nn.Sequential) -> None:
        self.net = copy.deepcopy(net).double().eval()
        self.layers = affine_layers(self.net)
        self.n_units = int(sum(layer.bias.size for layer in self.layers))
        self.work = Work()
        self._walker: ModuleWalker | None = None

    def frozen(self, anchors: np.ndarray, points: np.ndarray, ctx: np.ndarray | None, at_anchor: np.ndarray,
               reach: np.ndarray) -> np.ndarray:
        """Exact frozen-code outputs (log-probabilities) at `points`: one gated float64 forward of the
        rows [anchors, points] (2 single-point forward equivalents per point)."""
        t0 = time.perf_counter()
        if self._walker is None:
            self._walker = ModuleWalker(self.net)
        out = self._walker.frozen(np.asarray(anchors, dtype=np.float64), np.asarray(points, dtype=np.float64))
        self.work.control_evaluations += 2 * out.shape[0]
        self.work.seconds += time.perf_counter() - t0
        return torch.log_softmax(torch.from_numpy(out), dim=-1).numpy()

    def outputs(self, points: np.ndarray, ctx: np.ndarray | None,
                keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        x = np.asarray(points, dtype=np.float64)
        codes = codes_along(self.layers, x)
        rows = x if keep is None else x[np.asarray(keep, dtype=bool)]
        with torch.inference_mode():
            logp = torch.log_softmax(self.net(torch.from_numpy(rows)), dim=-1).numpy()
        self.work.n_rows += x.shape[0]
        self.work.seconds += time.perf_counter() - t0
        return codes, logp

    def segment(self, p0: np.ndarray, p1: np.ndarray, ctx: int | None) -> np.ndarray:
        t0 = time.perf_counter()
        walk = walk_segment(self.layers, p0, p1)
        self.work.segment_evaluations += walk.n_evaluations
        self.work.seconds += time.perf_counter() - t0
        return walk.t


class AdapterDownstream:
    """Evaluator through the adapter's hooks (approximate crossings; see the module docstring)."""

    exact = False

    def __init__(self, adapter: Adapter, site: Site | None, later: Sequence[Site], contexts: Contexts,
                 *, max_rows: int = 256, causal: bool = True) -> None:
        if site is None and adapter.input_kind != "vectors":
            raise PolyauditError("the input site exists only for vector models")
        self.adapter = adapter
        self.site = site
        self.later = list(later)
        self.contexts = contexts
        self.max_rows = max_rows
        space = output_space(adapter)
        if space is None:
            raise PolyauditError("the model has no output head and no token representation to compare")
        self.space = space
        # a pooled sentence embedding reads every position: the context is never cut after the kept one
        self.pooling = adapter.pooling if space.kind == "embedding" else None
        self.causal = causal and adapter.input_kind == "tokens" and self.pooling is None
        self.codes_exact = bool(adapter.piecewise_linear)
        self.activation = str(adapter.activation)
        self.work = Work()
        self.n_units = -1  # known after the first call
        self.segment_evaluations = 0
        self.not_exact: str | None = None  # why an exact walk was refused (e.g. max pooling)
        self.sampling: UnitSample | None = None  # the units whose codes are read (`sample_units`)
        self._sample_target = 0
        self._sample_seed = 0
        self._widths: dict[Site, int] = {}

    def sample_units(self, target: int, seed: int) -> None:
        """Read the codes of about `target` of the later units only, drawn at random without
        replacement (seeded), the same share of each site, when the sites have more units than
        that in all and the codes are a smooth proxy (sign of a pre-activation). The walks then
        count the crossings of the sampled units, and each path's total over all later units is
        estimated with its standard error (`UnitSample`; `polyaudit.analyses.polylines.unit_estimate`)."""
        self._sample_target, self._sample_seed = int(target), int(seed)

    def _choose_units(self, ctx: np.ndarray | None, first: np.ndarray) -> None:
        """Pick the sampled units once, from the widths of the later sites (one single-row run)."""
        if self._sample_target <= 0 or self.codes_exact or self.sampling is not None or not self.later:
            return
        self._chunk(first[:1], None if ctx is None else np.asarray(ctx)[:1])
        total = sum(self._widths.values())
        if total <= self._sample_target:
            self._sample_target = 0
            return
        rng = np.random.default_rng(self._sample_seed)
        frac = self._sample_target / total
        index: dict[Site, torch.Tensor] = {}
        sizes = []
        for site in self.later:
            w = self._widths[site]
            m = max(2, min(w, round(w * frac)))
            index[site] = torch.from_numpy(np.sort(rng.choice(w, size=m, replace=False)))
            sizes.append((w, m))
        self.sampling = UnitSample(index=index, widths=tuple(w for w, _ in sizes),
                                   sampled=tuple(m for _, m in sizes))

    def _codes(self, site: Site, on: torch.Tensor) -> torch.Tensor:
        """The code bits [b, units] read at `site`: every unit, or the sampled ones."""
        self._widths[site] = int(on.shape[-1])
        if self.sampling is None:
            return on
        return on[..., self.sampling.index[site].to(on.device)]

    def segment(self, p0: np.ndarray, p1: np.ndarray, ctx: int | None) -> np.ndarray:
        raise PolyauditError("exact crossings need a piecewise-linear nn.Sequential after the site")

    @property
    def control_evaluations(self) -> int:
        return self.work.control_evaluations

    def frozen(self, anchors: np.ndarray, points: np.ndarray, ctx: np.ndarray | None, at_anchor: np.ndarray,
               reach: np.ndarray) -> np.ndarray:
        """The rest of the model linearized at each anchor (see the module docstring): the outputs at
        `fd_probes` (one per distinct anchor, direction and context: points on one line from an anchor
        share it), through `outputs` (the adapter's hooks, or a subclass's cheaper route),
        extrapolated to the points."""
        probes, frac = fd_probes(anchors, points, reach)
        key = np.concatenate([np.round(probes.reshape(probes.shape[0], -1), 9),
                              np.zeros((probes.shape[0], 1)) if ctx is None else np.asarray(ctx)[:, None]], axis=1)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        rows_before = self.work.n_rows
        _, at_probe = self.outputs(probes[first], None if ctx is None else np.asarray(ctx)[first])
        self.work.control_evaluations += self.work.n_rows - rows_before
        return linearized(at_anchor, np.asarray(at_probe)[inverse.ravel()], frac, self.space)

    def _head(self) -> nn.Module | None:
        """The output head (LM / MLM decoder) of a token model, fed only the kept positions so no
        [batch, length, vocabulary] logits are ever made."""
        return self.adapter.output_head()

    def outputs(self, points: np.ndarray, ctx: np.ndarray | None,
                keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        pts = np.asarray(points)
        self._choose_units(ctx, pts)
        k = np.ones(pts.shape[0], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
        codes, logps = [], []
        for start in range(0, pts.shape[0], self.max_rows):
            sl = slice(start, start + self.max_rows)
            c, lp = self._chunk(pts[sl], None if ctx is None else np.asarray(ctx)[sl])
            codes.append(c)
            logps.append(lp[k[sl]])
        self.work.n_rows += pts.shape[0]
        self.work.seconds += time.perf_counter() - t0
        out = np.concatenate(codes), np.concatenate(logps)
        self.n_units = out[0].shape[1]
        return out

    def _chunk(self, pts: np.ndarray, ctx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ad = self.adapter
        b = pts.shape[0]
        values = torch.from_numpy(np.ascontiguousarray(pts)).to(device=ad.device, dtype=ad.dtype)
        rows = torch.arange(b, device=ad.device)
        if ctx is None:
            if self.site is not None:
                raise PolyauditError("points written into a site need the inputs (contexts) they belong to")
            inputs, mask, pos = values.reshape(b, *self.contexts.inputs.shape[1:]), None, None
        else:
            idx = torch.from_numpy(np.asarray(ctx, dtype=np.int64))
            inputs = self.contexts.inputs[idx]
            mask = None if self.contexts.mask is None else self.contexts.mask[idx]
            pos = None
            if self.contexts.pos is not None:
                p = np.asarray(self.contexts.pos)[np.asarray(ctx, dtype=np.int64)]
                if self.causal:
                    inputs = inputs[:, : int(p.max()) + 1]
                    mask = None if mask is None else mask[:, : int(p.max()) + 1]
                pos = torch.from_numpy(p).to(ad.device)
            if self.site is None:  # the points are the inputs (flattened): restore the input shape
                inputs = values.reshape(b, *self.contexts.inputs.shape[1:])
        read: dict[Site, torch.Tensor] = {}

        def take(t: torch.Tensor) -> torch.Tensor:
            return t[rows, pos] if pos is not None else t.reshape(b, -1)

        def reader(site: Site, t: torch.Tensor) -> None:
            read[site] = self._codes(site, take(t) > 0).cpu()

        def writer(site: Site, t: torch.Tensor) -> torch.Tensor:
            if pos is None:
                return values.reshape(t.shape).to(t.dtype)
            out = t.clone()
            out[rows, pos] = values.to(t.dtype)
            return out

        def head_input(_mod: nn.Module, args: Any) -> Any:  # the output head sees the kept positions only
            return (args[0][rows, pos][:, None, :], *args[1:])

        writes = {} if self.site is None else {self.site: writer}
        head = self._head()
        handle = head.register_forward_pre_hook(head_input) if head is not None and pos is not None else None
        try:
            with torch.inference_mode(), ad.hooks(reads=dict.fromkeys(self.later, reader), writes=writes):
                logits = ad.logits(inputs, mask)
        finally:
            if handle is not None:
                handle.remove()
        missing = [s.name for s in self.later if s not in read]
        if missing:
            raise PolyauditError(f"sites {', '.join(missing)} never fired in the downstream forward")
        if pos is None:
            out = logits.reshape(b, -1)
        elif self.pooling is not None:  # the sentence embedding of the whole (written) sequence
            out = self.pooling.pool(logits, mask)
        else:
            out = logits[:, 0] if handle is not None else take(logits)
        logp = self.finish(out)
        codes = (torch.cat([read[s] for s in self.later], dim=1).numpy() if self.later
                 else np.zeros((b, 0), dtype=bool))
        return codes, logp


    def finish(self, out: torch.Tensor) -> np.ndarray:
        """The outputs [b, C] as the space keeps them: log-probabilities, or unit vectors."""
        precise = precise_logits(out)
        if self.space.kind == "distribution":
            return torch.log_softmax(precise, dim=-1).cpu().numpy()
        return unit_rows(precise.cpu().numpy()).astype(precise.cpu().numpy().dtype)


def precise_logits(logits: torch.Tensor) -> torch.Tensor:
    """float32 logits, or float64 where the model computes in float64 (the linearized control's
    forward differences keep its precision)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def later_sites(adapter: Adapter, site: Site | None) -> list[Site]:
    """The `mlp_pre` sites after `site` (all of them after the input)."""
    first = 0 if site is None else site.layer + (1 if site.kind in ("resid", "mlp_out") else 0)
    return [s for s in adapter.sites("mlp_pre") if s.layer >= first]
