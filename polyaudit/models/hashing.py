"""A content hash of a model's weights, for report provenance and activation cache keys."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

_CHUNK = 1 << 24  # elements hashed per step: bounds the temporary copy of large tensors


def _update(h: hashlib._Hash, t: torch.Tensor) -> None:
    flat = t.detach().reshape(-1)
    for start in range(0, flat.numel(), _CHUNK):
        part = flat[start : start + _CHUNK].contiguous().cpu()
        # raw bytes of any dtype (numpy has no bfloat16: view as bytes first)
        h.update(part.view(torch.uint8).numpy().data)


def model_sha256(model: nn.Module) -> str:
    """sha256 over (name, dtype, shape, bytes) of every parameter and buffer, sorted by name.

    Tensors are hashed one chunk at a time, so the model is never copied whole (tied weights appear
    once, under their first name)."""
    tensors: dict[str, torch.Tensor] = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        _update(h, t)
    return h.hexdigest()
