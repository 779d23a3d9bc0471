"""Downstream evaluation for causal language models with the context's prefix computed once.

C2 and C3 write many points into the same context at the same kept position p. In a causal model
the tokens before p cannot see position p, so their keys and values are the same for every point:
`PrefixCachedDownstream` runs the prefix once per context (`Adapter.prefix_cache`, for adapters
whose `capabilities.prefix_cache` is on) and each point then costs ONE token through the model
instead of p + 1 (`Adapter.cached_logits`). Rows of one context run together,
with the prefix cache repeated along the batch. Contexts whose prefix has padding fall back to the
full-sequence evaluation of `AdapterDownstream`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from polyaudit.interventions.downstream import AdapterDownstream
from polyaudit.models.base import PrefixCache, Site

MAX_MEMO = 2048  # prefix caches kept (one per context; small: layers x 2 x p x d)


class PrefixCachedDownstream(AdapterDownstream):
    """`AdapterDownstream` for causal LMs, one token per point (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._memo: dict[int, PrefixCache] = {}

    def outputs(self, points: np.ndarray, ctx: np.ndarray | None,
                keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if ctx is None or self.contexts.pos is None:
            return super().outputs(points, ctx, keep)
        import time

        t0 = time.perf_counter()
        pts = np.asarray(points)
        c = np.asarray(ctx, dtype=np.int64)
        self._choose_units(c, pts)
        m = pts.shape[0]
        order = np.argsort(c, kind="stable")
        cuts = np.flatnonzero(np.diff(c[order])) + 1
        codes_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for group in np.split(order, cuts):
            for start in range(0, group.size, self.max_rows):
                rows = group[start:start + self.max_rows]
                codes, logp = self._rows(pts[rows], int(c[rows[0]]))
                codes_parts.append((rows, codes, logp))
        n_units = codes_parts[0][1].shape[1]
        codes_all = np.empty((m, n_units), dtype=bool)
        logp_all = np.empty((m, codes_parts[0][2].shape[1]), dtype=codes_parts[0][2].dtype)
        for rows, codes, logp in codes_parts:
            codes_all[rows] = codes
            logp_all[rows] = logp
        k = np.ones(m, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
        self.work.n_rows += m
        self.work.seconds += time.perf_counter() - t0
        self.n_units = n_units
        return codes_all, logp_all[k]

    def _prefix(self, c: int, p: int) -> PrefixCache:
        """The key/value cache of context c's first p tokens (memoised)."""
        if c not in self._memo:
            if len(self._memo) >= MAX_MEMO:
                self._memo.clear()
            self._memo[c] = self.adapter.prefix_cache(self.contexts.inputs[c, :p][None])
        return self._memo[c]

    def _rows(self, pts: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.contexts.pos is not None
        p = int(self.contexts.pos[c])
        mask = self.contexts.mask
        if p == 0 or (mask is not None and not bool(mask[c, : p + 1].all())):
            codes, logp = self._chunk(pts, np.full(pts.shape[0], c))
            return codes, logp
        ad = self.adapter
        b = pts.shape[0]
        values = torch.from_numpy(np.ascontiguousarray(pts)).to(device=ad.device, dtype=ad.dtype)
        prefix = self._prefix(c, p)  # before the hooks: the prefix's forward must not fire them
        token = self.contexts.inputs[c, p].reshape(1, 1).expand(b, 1)
        read: dict[Site, torch.Tensor] = {}

        def reader(site: Site, t: torch.Tensor) -> None:
            read[site] = self._codes(site, t[:, -1] > 0).cpu()

        def writer(site: Site, t: torch.Tensor) -> torch.Tensor:
            out = t.clone()
            out[:, -1] = values.to(t.dtype)
            return out

        writes = {} if self.site is None else {self.site: writer}
        with torch.inference_mode(), ad.hooks(reads=dict.fromkeys(self.later, reader), writes=writes):
            logits = ad.cached_logits(token, prefix)
        codes = torch.cat([read[s] for s in self.later], dim=1).numpy()
        return codes, self.finish(logits)
