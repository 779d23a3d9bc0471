"""The pooling a sentence encoder applies to its final hidden states (sentence-transformers folders).

A sentence-transformers checkpoint is a transformer plus a `modules.json` pipeline: usually
`Transformer -> Pooling (1_Pooling/config.json) [-> Dense] [-> Normalize]`. polyaudit audits the
transformer and measures semantic change of a headless model on the embedding the model is used
with: the pooled sentence embedding, compared by cosine (`polyaudit.interventions.downstream`,
`polyaudit.interventions.unit_dropout`). `Pooling.pool` reproduces sentence-transformers' Pooling
module for the modes it defines; several enabled modes are concatenated in its order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# sentence-transformers' Pooling config keys, in the order it concatenates the enabled modes
MODES: tuple[str, ...] = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
CONFIG_KEYS: dict[str, str] = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


@dataclass(frozen=True)
class Pooling:
    """How token states become one sentence embedding. `source`: where it was read (for the report
    header); `after`: the pipeline's later modules (Dense, Normalize), named, not applied (cosine
    is unchanged by Normalize; a Dense projection is outside the audited transformer)."""

    modes: tuple[str, ...]
    source: str = ""
    after: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"pooling modes must be a non-empty subset of {', '.join(MODES)}; got {self.modes}")

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, D]: the enabled modes of `hidden` [batch, length, d] over the real tokens of
        `mask` [batch, length] (all tokens when None), concatenated (D = d x modes)."""
        h = hidden
        b, length = int(h.shape[0]), int(h.shape[1])
        m = (torch.ones((b, length), device=h.device) if mask is None else mask.to(h.device)).to(h.dtype)
        w = m[..., None]
        count = w.sum(1).clamp(min=1.0)
        parts = []
        for mode in MODES:
            if mode not in self.modes:
                continue
            if mode == "cls":  # the first real token (position 0 unless the tokenizer pads on the left)
                parts.append(h[torch.arange(b, device=h.device), m.argmax(1)])
            elif mode == "max":
                parts.append(torch.where(w > 0, h, torch.full_like(h, torch.finfo(h.dtype).min)).amax(1))
            elif mode == "mean":
                parts.append((h * w).sum(1) / count)
            elif mode == "mean_sqrt_len":
                parts.append((h * w).sum(1) / count.sqrt())
            elif mode == "weightedmean":  # weights 1, 2, ... over the real tokens, from the first one
                pos = (m.cumsum(1) * m)[..., None]
                parts.append((h * pos).sum(1) / pos.sum(1).clamp(min=1.0))
            else:  # lasttoken: the last real token of each row
                last = (m.cumsum(1) * m).argmax(1)
                parts.append(h[torch.arange(b, device=h.device), last])
        return torch.cat(parts, dim=-1)

    def describe(self) -> str:
        text = "+".join(self.modes) + " pooling"
        if self.source:
            text += f" ({self.source})"
        if self.after:
            text += f"; not applied after it: {', '.join(self.after)}"
        return text
