"""The ProbeSet contract shared by probes, capture and claims."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch


@dataclass(frozen=True)
class ProbeSet:
    """Inputs to run, and which (sequence, position) samples to keep.

    kind == "tokens": `inputs` is a LongTensor [n_seq, seq_len] of token ids, `attention_mask` the
    matching 0/1 mask, `positions` an int array [n_samples, 2] of (sequence index, position) pairs to
    keep as samples, and `skip` the number of leading positions excluded from all-token statistics
    (streaming spectra).
    kind == "vectors": `inputs` is a float tensor [n, ...] (images, feature vectors); every input is
    one sample and `positions` is None, except for a convolutional model read at several spatial
    positions per image (`pos=all`): then `positions` holds (image, grid position) pairs and
    `meta["positions_per_input"]` the grid size (see `polyaudit.probes.spatial`).
    `labels` (one per kept sample) are ints indexing `label_names`, or None.
    """

    name: str
    kind: Literal["tokens", "vectors"]
    inputs: torch.Tensor
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] | None = None
    attention_mask: torch.Tensor | None = None
    positions: np.ndarray | None = None
    skip: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        if self.positions is not None:
            return int(self.positions.shape[0])
        return int(self.inputs.shape[0])

    @property
    def rows_per_input(self) -> int:
        """Rows a site yields per input: token positions per sequence; for vectors, the spatial
        positions of a convolutional model's position selector (`meta["positions_per_input"]`)."""
        if self.kind == "tokens":
            return int(self.inputs.shape[1])
        return int(self.meta.get("positions_per_input", 1))

    @property
    def input_labels(self) -> np.ndarray | None:
        """One label per INPUT (an image kept at several positions has one label; tokens: per sample)."""
        if self.labels is None or self.kind == "tokens" or self.positions is None:
            return self.labels
        out = np.empty(int(self.inputs.shape[0]), dtype=np.asarray(self.labels).dtype)
        out[np.asarray(self.positions[:, 0], dtype=np.int64)] = self.labels
        return out

    @property
    def groups(self) -> np.ndarray:
        """Resampling unit of each kept sample: its sequence (tokens) or itself (vectors)."""
        if self.positions is not None:
            return np.asarray(self.positions[:, 0], dtype=np.int64)
        return np.arange(self.inputs.shape[0], dtype=np.int64)

    @property
    def digest(self) -> str:
        """sha256 over everything that determines the activations and the samples."""
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.kind}|skip={self.skip}".encode())
        for arr in (self.inputs, self.attention_mask):
            if arr is not None:
                t = arr.detach().cpu().contiguous()
                h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
                h.update(t.numpy().tobytes())
        for arr2 in (self.positions, self.labels):
            if arr2 is not None:
                a = np.ascontiguousarray(arr2)
                h.update(str(a.shape).encode() + str(a.dtype).encode() + a.tobytes())
        if self.label_names:
            h.update("|".join(self.label_names).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """Provenance for reports."""
        return {
            "name": self.name,
            "kind": self.kind,
            "n_inputs": int(self.inputs.shape[0]),
            "input_shape": list(self.inputs.shape[1:]),
            "n_samples": self.n_samples,
            "skip": self.skip,
            "n_labels": len(self.label_names) if self.label_names else 0,
            "sha256": self.digest,
            **{k: v for k, v in self.meta.items() if isinstance(v, (int, float, str, bool))},
        }
