"""Activation parity: before any claim runs, what an adapter reads must be what the model computes.

Once per model, on a few tokens of its probe, one forward in which the adapter reads every site and
the model reports its own hidden states (`Adapter.own_states`): every `resid` site must equal the
model's hidden state after that block (the last one through the final norm the model applies
before reporting it), and every `mlp_pre` must give the recorded `mlp_out` through the MLP's
activation and down projection (families with non-gated MLPs), within a tolerance set by the dtype.
A mismatch is one line naming the family, the site and the size of the difference; no claim runs on
wrong activations. This is what catches an adapter bug on a new family (a site hooked one layer off,
the wrong module named).
"""

from __future__ import annotations

from typing import Any

import torch

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter, Site

TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9, torch.float16: 2e-2, torch.bfloat16: 5e-2}


def _gap(mine: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max |mine - ref|, max |ref|) over the positions both have, in float32."""
    a, b = mine.float(), ref.float()
    if a.shape != b.shape:
        return float("inf"), float(b.abs().max())
    return float((a - b).abs().max()), float(b.abs().max())


def _refuse(adapter: Adapter, layer: int, site: Site, what: str, gap: float, scale: float, tol: float) -> None:
    dtype = str(adapter.dtype).replace("torch.", "")
    raise PolyauditError(
        f"activation parity failed for the {adapter.family} adapter at layer {layer} {site.kind} (its site "
        f"{site.name}, module {site.module}): {what} differs by {gap:.3g} "
        f"(largest |value| {scale:.3g}, tolerance {tol:g} x that for {dtype}): the adapter reads the wrong "
        "tensor, so no claim was run; fix the adapter (polyaudit.models.check.check_adapter helps)")


def check_parity(adapter: Adapter, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, Any]:
    """Raise PolyauditError (one line) on the first mismatch; else what was checked."""
    states = adapter.own_states(inputs, attention_mask)
    if states is None:
        return {"checked": False, "why": "the model reports no hidden states of its own"}
    tol = TOLERANCE.get(adapter.dtype, 2e-2)
    resid = adapter.sites("resid") if "resid" in adapter.site_kinds else []
    if len(states.hidden) != len(resid) + 1:
        raise PolyauditError(
            f"activation parity failed for the {adapter.family} adapter: the model reports {len(states.hidden) - 1} "
            f"block outputs, the adapter names {len(resid)} layers")
    for layer, site in enumerate(resid):
        mine = states.reads[site]
        if layer == len(resid) - 1 and states.final is not None:
            mine = states.final(mine)
        gap, scale = _gap(mine, states.hidden[layer + 1])
        if gap > tol * max(scale, 1e-6):
            _refuse(adapter, layer, site, f"the residual stream it reads and the model's hidden state {layer + 1}", gap,
                    scale, tol)
    n_mlp = 0
    if states.mlp_out is not None and {"mlp_pre", "mlp_out"} <= set(adapter.site_kinds):
        for layer, (pre, out) in enumerate(zip(adapter.sites("mlp_pre"), adapter.sites("mlp_out"), strict=True)):
            with torch.inference_mode():
                implied = states.mlp_out(layer, states.reads[pre])
            gap, scale = _gap(implied, states.reads[out])
            if gap > tol * max(scale, 1e-6):
                _refuse(adapter, layer, pre, "the MLP output its pre-activation implies and the MLP output", gap, scale, tol)
            n_mlp += 1
    return {"checked": True, "resid_layers": len(resid), "mlp_layers": n_mlp, "tolerance": tol,
            "tokens": int(inputs.numel())}
