"""What C2, C3 and the single-checkpoint C5 compare as semantic change: the model's output in the
geometry it is used with.

- `DISTRIBUTION`: a model with an output head (LM / MLM decoder, classifier). Outputs are
  log-probabilities; change between two outputs is the Jensen-Shannon divergence in bits (in
  [0, 1]); change from a reference is KL(p_ref || p) in bits; the top output is the argmax.
- `embedding(what)`: a model without a head (a sentence encoder, a feature extractor, anything
  loaded as `AutoModel`). Outputs are the model's own representation (the final hidden state at
  the kept position, or the pooled sentence embedding where the checkpoint says how it pools),
  stored as unit vectors; change between two outputs and from a reference is the cosine distance
  (1 - cos) / 2 (in [0, 1], like JS in bits; sqrt of it is a metric, sin of half the angle);
  there is no top output, so C3's flip rate and validity radius are not defined.

Both spaces renormalise a linearized output (`renormalise`): log-softmax for log-probabilities,
unit length for embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch


def f64(x: np.ndarray) -> torch.Tensor:
    """A float64 torch view of `x` (a copy only when it is not float64 already)."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


# These run over outputs as wide as a vocabulary ([points, 50,257] for GPT-2) for every point of
# C2/C3's walks: torch's float64 kernels (vectorised, on every core) take a fraction of numpy's
# time for the same float64 arithmetic (equal to ~1e-15).


def js_bits(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits between rows of two log-probability arrays [..., C]."""
    lp, lq = f64(logp), f64(logq)
    p, q = lp.exp(), lq.exp()
    logm = (0.5 * (p + q)).clamp_min(1e-300).log()
    kl = (p * (lp - logm)).sum(-1) + (q * (lq - logm)).sum(-1)
    return np.asarray((0.5 * kl / math.log(2.0)).clamp(0.0, 1.0).numpy())


def kl_bits(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """KL(p || q) in bits between rows of two log-probability arrays [..., C]."""
    lp, lq = f64(logp), f64(logq)
    return np.asarray(((lp.exp() * (lp - lq)).sum(-1) / math.log(2.0)).clamp_min(0.0).numpy())


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Rows of `z` [..., C] renormalised to log-probabilities (float64)."""
    return np.asarray(torch.log_softmax(f64(z), dim=-1).numpy())


def unit_rows(z: np.ndarray) -> np.ndarray:
    """Rows of `z` [..., d] scaled to unit length (float64; a zero row stays zero)."""
    z64 = np.asarray(z, dtype=np.float64)
    norm = np.linalg.norm(z64, axis=-1, keepdims=True)
    return np.divide(z64, norm, out=np.zeros_like(z64), where=norm > 0)


def cosine_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(1 - cos(a, b)) / 2 between rows of two arrays [..., d] (any length; 0.5 where one is zero)."""
    cos = np.sum(unit_rows(a) * unit_rows(b), axis=-1)
    return np.clip(0.5 * (1.0 - cos), 0.0, 1.0)


@dataclass(frozen=True)
class OutputSpace:
    """The geometry semantic change is measured in (module docstring)."""

    kind: Literal["distribution", "embedding"]
    what: str  # for row notes: which output, compared how

    def change(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Change between rows of two output arrays [..., C] (in [0, 1])."""
        return js_bits(a, b) if self.kind == "distribution" else cosine_change(a, b)

    def from_reference(self, ref: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Change from a reference output (KL(p_ref || p) in bits; the cosine distance)."""
        return kl_bits(ref, b) if self.kind == "distribution" else cosine_change(ref, b)

    def top(self, a: np.ndarray) -> np.ndarray | None:
        """The top output of each row (argmax), or None where outputs have no top (embeddings)."""
        return np.asarray(a).argmax(axis=-1) if self.kind == "distribution" else None

    def renormalise(self, z: np.ndarray) -> np.ndarray:
        """A linearized output back in the space: log-softmax, or unit length."""
        return log_softmax(z) if self.kind == "distribution" else unit_rows(z)

    @property
    def change_name(self) -> str:
        return "JS (bits)" if self.kind == "distribution" else "cosine distance (1 - cos) / 2"


DISTRIBUTION = OutputSpace("distribution", "the output distribution (JS in bits)")
KEPT_STATE = "the final hidden state at the kept position"


def embedding(what: str = KEPT_STATE) -> OutputSpace:
    """The space of a headless model's own representation, compared by cosine."""
    return OutputSpace("embedding", f"{what} (cosine distance; the model has no output head)")
