"""Run a model over a probe set and record activations at sites, once per (model, probe, site).

Claims declare up front which site kinds they read (`request`), so ONE truncated forward pass over
the probe serves them all: the adapter stops the forward as soon as the deepest hooked site has
fired, so no layer past it (and no LM head) runs. The hooks do the least work they can: gather the
kept rows on the device (the batch's (sequence, position) pairs for tokens, every row for vectors)
and copy them into a preallocated float32 CPU buffer. Results live in memory for the run and in an
`ActivationCache` on disk for the next one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from polyaudit.errors import PolyauditError
from polyaudit.models.base import LoadedModel, Site, SiteKind
from polyaudit.probes.base import ProbeSet
from polyaudit.progress import progress_bar
from polyaudit.store.activations import ActivationCache, as_stored, entry_key


@dataclass(frozen=True)
class SiteData:
    """The activations of one site at every kept sample of a probe (arrays are read-only: they are
    shared by every claim of the run)."""

    site: Site
    samples: np.ndarray  # float32 [n_samples, d]: the site's activation at each kept sample
    groups: np.ndarray  # int [n_samples]: resampling unit (probe.groups)
    labels: np.ndarray | None
    n_nonfinite: int  # non-finite values found (kept as they are; claims turn them into ERROR rows)
    packed_codes: np.ndarray | None = None  # mlp_pre: uint8 [n, ceil(d / 8)], exact spline codes

    @property
    def d(self) -> int:
        return int(self.samples.shape[1])

    @functools.cached_property
    def decomposition(self) -> tuple[np.ndarray, np.ndarray]:
        """`measures.spectrum.decompose(samples)`: computed once per run and shared by every claim
        that fits this site's spectrum (C4, C5, C6), so each layer is diagonalised once."""
        from polyaudit.measures.spectrum import decompose

        eig, scores = decompose(self.samples)
        eig.flags.writeable = scores.flags.writeable = False  # shared: read-only
        return eig, scores

    @property
    def codes(self) -> np.ndarray:
        """bool [n, d] spline codes (pre-activation > 0): the exact packed codes when captured,
        else the sign of `samples`."""
        if self.packed_codes is None:
            return self.samples > 0
        return np.unpackbits(self.packed_codes, axis=1, count=self.d).astype(bool)


@dataclass
class CaptureStats:
    forward_seconds: float = 0.0
    n_forward_batches: int = 0
    n_forward_passes: int = 0  # full passes over the probe
    cache_hits: int = 0
    cache_misses: int = 0
    recomputed: int = 0  # corrupt cache entries detected and recomputed


@dataclass(frozen=True)
class _Batch:
    inputs: slice | torch.Tensor  # the probe's inputs this batch runs (a slice, or their indices)
    size: int  # how many inputs
    length: int | None  # token probes: positions run (the rest cut: none of them is needed), else None
    rows: slice  # rows of the (run-ordered) sample buffer this batch fills
    index: torch.Tensor | None  # tokens: local sequence * length + position of each kept sample


class Capture:
    """Activations of `probe` on `loaded`, per site: memory, then disk cache, then a forward pass."""

    def __init__(
        self,
        loaded: LoadedModel,
        probe: ProbeSet,
        *,
        cache: ActivationCache | None,
        batch_size: int,
        progress: bool = False,
    ) -> None:
        if batch_size < 1:
            raise PolyauditError(f"batch size must be at least 1, got {batch_size}")
        if probe.kind != loaded.adapter.input_kind:
            raise PolyauditError(
                f"probe {probe.name} holds {probe.kind}, the model takes {loaded.adapter.input_kind}"
            )
        self.loaded = loaded
        self.probe = probe
        # Without a model hash two models would share entries: no disk cache then.
        self.cache = cache if loaded.sha256 else None
        self.batch_size = batch_size
        self.progress = progress
        self.stats = CaptureStats()
        self._requested: set[Site] = set()
        self._memory: dict[Site, SiteData] = {}
        self._digest = probe.digest
        self._groups = probe.groups
        self._labels = None if probe.labels is None else np.array(probe.labels, dtype=np.int64)
        for arr in (self._groups, self._labels):
            if arr is not None:
                arr.flags.writeable = False
        adapter = loaded.adapter
        self._key_extra = (str(adapter.dtype), adapter.device.type)

    # --- public ------------------------------------------------------------------------------
    def request(self, kinds: Iterable[SiteKind]) -> None:
        """Declare site kinds the run will read, so one forward pass captures all of them."""
        for kind in kinds:
            self._requested.update(self.loaded.adapter.sites(kind))

    def get(self, site: Site) -> SiteData:
        """The site's activations at every kept sample: from memory, the disk cache, or one forward
        pass over the probe for every requested site not yet captured. Errors carry the model, probe
        and site (the one place capture adds context to them)."""
        if site in self._memory:
            return self._memory[site]
        try:
            self._capture(site)
        except PolyauditError as e:
            raise e.with_context(model=self.loaded.id, probe=self.probe.name, site=site.name) from e
        return self._memory[site]

    def _capture(self, site: Site) -> None:
        todo = self._missing(self._requested | {site})
        if todo and self.cache is not None:
            # parallel workers (pytest-xdist) capture a (model, probe) once: the others wait for
            # the lock and read the entries the first one wrote
            with self.cache.lock(entry_key(self.loaded.sha256, self._digest, "capture", *self._key_extra)):
                misses = self.stats.cache_misses
                todo = self._missing(todo)  # another worker may have captured them meanwhile
                self.stats.cache_misses = misses
                if todo:
                    self._forward(todo)
        elif todo:
            self._forward(todo)

    def _missing(self, sites: Iterable[Site]) -> list[Site]:
        """Sites neither in memory nor in the disk cache, shallow to deep."""
        return [s for s in sorted(sites, key=lambda s: s.depth_key)
                if s not in self._memory and not self._from_cache(s)]

    def get_kind(self, kind: SiteKind) -> list[SiteData]:
        """All layers of one kind, shallow to deep."""
        self.request([kind])
        return [self.get(s) for s in self.loaded.adapter.sites(kind)]

    # --- cache -------------------------------------------------------------------------------
    def _key(self, site: Site) -> str:
        return entry_key(self.loaded.sha256, self._digest, site.name, *self._key_extra)

    def _from_cache(self, site: Site) -> bool:
        if self.cache is None:
            return False
        found = self.cache.load(self._key(site))
        entry = found.entry
        if entry is not None and (
            entry.samples.shape[0] != self.probe.n_samples
            or not np.array_equal(entry.groups, self._groups)
        ):
            entry = None  # same key, different samples: cannot happen unless the file was swapped
        if entry is None:
            if found.corrupt:
                self.stats.recomputed += 1
            else:
                self.stats.cache_misses += 1
            return False
        self.stats.cache_hits += 1
        self._remember(site, entry.samples, entry.codes)
        return True

    def _remember(self, site: Site, samples: np.ndarray, packed: np.ndarray | None = None) -> SiteData:
        samples.flags.writeable = False  # shared by every claim of the run: read-only
        if packed is not None:
            packed.flags.writeable = False
        data = SiteData(
            site=site,
            samples=samples,
            groups=self._groups,
            labels=self._labels,
            n_nonfinite=int(samples.size - np.count_nonzero(np.isfinite(samples))),
            packed_codes=packed,
        )
        self._memory[site] = data
        return data

    # --- forward -----------------------------------------------------------------------------
    def _plan(self, device: torch.device) -> tuple[list[_Batch], np.ndarray | None]:
        """Batches to run and, for samples kept out of run order, the permutation from run order
        back to probe order (None when they already agree).

        Token probes run only the positions a kept sample needs: up to the last kept one in a
        causal model (later tokens cannot change it), up to the last real (unmasked) one in any
        other (trailing padding is masked out of every real position). Sequences run shortest
        first, as many per batch as fit in the tokens of `batch_size` full-length ones, so memory
        stays what a batch of full-length sequences takes. A probe of equal-length sequences whose
        last positions are kept runs as before: `batch_size` sequences in probe order."""
        n_inputs = int(self.probe.inputs.shape[0])
        bs = self.batch_size
        if self.probe.positions is None:
            return [
                _Batch(slice(b, min(b + bs, n_inputs)), min(b + bs, n_inputs) - b, None,
                       slice(b, min(b + bs, n_inputs)), None)
                for b in range(0, n_inputs, bs)
            ], None
        seq_len = self.probe.rows_per_input  # token positions, or a CNN's spatial positions
        pos = np.asarray(self.probe.positions, dtype=np.int64)
        need = self._needed(pos, n_inputs, seq_len)
        runs = np.argsort(need, kind="stable")
        runs = runs[need[runs] > 0]  # an input without kept samples needs no forward
        rank = np.full(n_inputs, -1, dtype=np.int64)
        rank[runs] = np.arange(runs.size)
        key = rank[pos[:, 0]]
        sort = np.argsort(key, kind="stable")
        order = None if np.array_equal(sort, np.arange(sort.size)) else sort
        key_run, tok = (key, pos[:, 1]) if order is None else (key[order], pos[order, 1])
        budget = bs * seq_len
        batches = []
        a = 0
        while a < runs.size:
            b = a + 1
            while b < runs.size and (b + 1 - a) * int(need[runs[b]]) <= budget:
                b += 1
            length = int(need[runs[b - 1]])  # the longest of the batch (shortest first)
            lo, hi = (int(v) for v in np.searchsorted(key_run, [a, b]))
            members = runs[a:b]
            contiguous = bool(np.all(np.diff(members) == 1))
            index = torch.from_numpy((key_run[lo:hi] - a) * length + tok[lo:hi]).to(device)
            batches.append(_Batch(slice(int(members[0]), int(members[-1]) + 1) if contiguous else torch.from_numpy(members),
                                  b - a, length if self.probe.kind == "tokens" else None, slice(lo, hi), index))
            a = b
        return batches, order

    def _needed(self, pos: np.ndarray, n_inputs: int, seq_len: int) -> np.ndarray:
        """int [inputs]: positions each input must run (0: none of its positions is kept)."""
        kept = np.zeros(n_inputs, dtype=bool)
        kept[pos[:, 0]] = True
        if self.probe.kind != "tokens":  # spatial positions: the whole input, always
            return np.where(kept, seq_len, 0)
        last = np.zeros(n_inputs, dtype=np.int64)  # one past each input's last kept position
        np.maximum.at(last, pos[:, 0], pos[:, 1] + 1)
        if self.loaded.adapter.capabilities.causal:
            return np.where(kept, last, 0)
        mask = self.probe.attention_mask
        if mask is None:
            return np.where(kept, seq_len, 0)
        m = np.asarray(mask, dtype=bool)
        real_end = seq_len - np.argmax(m[:, ::-1], axis=1)  # one past the last real position
        real_end[~m.any(axis=1)] = seq_len
        return np.where(kept, np.maximum(real_end, last), 0)  # a kept position is never cut

    def _forward(self, sites: list[Site]) -> None:
        adapter = self.loaded.adapter
        probe = self.probe
        device = adapter.device
        batches, order = self._plan(device)
        n = probe.n_samples
        seq_len = probe.rows_per_input if probe.positions is not None else 1
        buffers: dict[Site, torch.Tensor] = {}
        current: list[_Batch] = []

        def reader(site: Site, t: torch.Tensor) -> None:
            # [B, T, d], [B*T, d] (flattened MLPs) or [B, ...]: one row per token (or input).
            batch = current[0]
            flat = t.reshape(batch.size * (seq_len if batch.length is None else batch.length), -1)
            buf = buffers.get(site)
            if buf is None:
                buf = buffers[site] = torch.empty((n, flat.shape[1]), dtype=torch.float32)
            elif buf.shape[1] != flat.shape[1]:
                raise PolyauditError(
                    f"site width changed between batches ({buf.shape[1]} -> {flat.shape[1]})",
                    site=site.name,
                )
            out = buf[batch.rows]
            if batch.index is None:
                out.copy_(flat)
            elif flat.device == out.device and flat.dtype == out.dtype:
                torch.index_select(flat, 0, batch.index, out=out)  # gather straight into the buffer
            else:
                out.copy_(flat.index_select(0, batch.index))  # gather on the device, then one copy

        reads = dict.fromkeys(sites, reader)
        t0 = time.perf_counter()
        label = f"capturing {len(sites)} sites of {self.loaded.id}"
        with progress_bar(label, total=len(batches), enabled=self.progress) as advance:
            for batch in batches:
                current[:] = [batch]
                inputs, mask = probe.inputs[batch.inputs], probe.attention_mask
                mask = None if mask is None else mask[batch.inputs]
                if batch.length is not None and batch.length < inputs.shape[1]:
                    inputs = inputs[:, : batch.length]
                    mask = None if mask is None else mask[:, : batch.length]
                adapter.run_until(inputs, None if mask is None else mask.to(device), reads)
                self.stats.n_forward_batches += 1
                advance(1)
        self.stats.forward_seconds += time.perf_counter() - t0
        self.stats.n_forward_passes += 1
        missing = [s.name for s in sites if s not in buffers]
        if missing and batches:
            raise PolyauditError(
                f"sites {', '.join(missing)} never fired during the forward pass: the adapter names the wrong modules"
            )
        for site in sites:
            samples = (
                buffers[site].numpy() if site in buffers else np.zeros((n, 0), dtype=np.float32)
            )
            if order is not None:
                restored = np.empty_like(samples)
                restored[order] = samples
                samples = restored
            # spline codes of pre-activation sites, from the float32 values (exact), 8 per byte
            packed = np.packbits(samples > 0, axis=1) if site.kind == "mlp_pre" else None
            if self.cache is not None:
                self.cache.store(self._key(site), samples, self._groups, self._labels, packed)
            # claims see exactly what a warm run reads back from the cache (float16 with the
            # entry's scale), so a cold run, a warm run and a --no-cache run give the same numbers
            self._remember(site, as_stored(samples), packed)
