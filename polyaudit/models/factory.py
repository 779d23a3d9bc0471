"""User factories: `module.path:callable` returns a model, optionally with its probe data.

    def make():                       # mypkg/models.py, used as --model=mypkg.models:make
        net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        return net, (inputs, labels)  # or just `net`; labels may be omitted

The callable is called with no arguments. It returns a model, or its OWN adapter (an instance of a
`polyaudit.models.base.Adapter` subclass whose `.model` is the module: any architecture), each
optionally with a probe: `net`, `(net, probe)`, `adapter` or `(adapter, probe)`. Without its own
adapter the model must be an `nn.Sequential`, a convolutional network (any module with
convolutions and nonlinearity modules, e.g. a torchvision ResNet; it needs its probe's images to
trace its layers, and `?pos=` picks the spatial positions read, see `polyaudit.models.conv`) or a
transformers `PreTrainedModel` of a known family. The probe becomes a "vectors" ProbeSet named
`factory:SPEC`. Check an adapter of your own with `polyaudit.models.check.check_adapter`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        why = (str(e).strip().splitlines() or [""])[0]
        raise PolyauditError(
            f"cannot import module {module_name!r} of factory {spec!r} ({type(e).__name__}: {why}); "
            "check the name and that its folder is on sys.path (PYTHONPATH)"
        ) from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise PolyauditError(
            f"module {module_name!r} has no callable {attr!r}: define def {attr}(): "
            "returning an nn.Module (and optionally a probe)"
        )
    return fn


@dataclass(frozen=True)
class FactoryProbe:
    """The probe data a factory returned, checked: inputs, and labels as class indices with their
    names (`polyaudit.probes.registry` makes it the probe set `factory:SPEC`)."""

    name: str
    inputs: torch.Tensor
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] | None = None


def _as_probe(spec: str, probe: Any) -> Any:
    """A checked FactoryProbe from `(inputs, labels)`, `(inputs,)` or a tensor; a ready-made probe
    set (anything with `inputs` and `kind`) as it is."""
    if hasattr(probe, "inputs") and hasattr(probe, "kind"):
        return probe
    if isinstance(probe, torch.Tensor):
        probe = (probe,)
    if (
        not isinstance(probe, (tuple, list))
        or not 1 <= len(probe) <= 2
        or not isinstance(probe[0], torch.Tensor)
    ):
        raise PolyauditError(
            f"factory {spec!r} returned a probe of type {type(probe).__name__}: "
            "return (inputs, labels) tensors, (inputs,) or a ProbeSet"
        )
    inputs = probe[0].detach()
    raw = probe[1] if len(probe) == 2 else None
    labels: np.ndarray | None = None
    names: tuple[str, ...] | None = None
    if raw is not None:
        arr = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        if arr.shape != (inputs.shape[0],) or not np.issubdtype(arr.dtype, np.integer):
            raise PolyauditError(
                f"factory {spec!r} returned labels of shape {arr.shape} ({arr.dtype}): "
                f"give one integer label per input ({inputs.shape[0]})"
            )
        uniq, inverse = np.unique(arr, return_inverse=True)
        labels, names = inverse.astype(np.int64), tuple(str(u) for u in uniq)
    return FactoryProbe(name=f"factory:{spec}", inputs=inputs, labels=labels, label_names=names)


def make_adapter(model: nn.Module, example: torch.Tensor | None = None, pos: str | None = None) -> Adapter:
    """The adapter of a module: a convolutional network (any module with a convolution and a
    nonlinearity module; traced on `example` inputs), an nn.Sequential, or a transformers model of
    a known family. `pos`: a CNN's position selector (default center)."""
    from polyaudit.models.conv import ConvAdapter, is_convolutional
    from polyaudit.models.hf import KNOWN_FAMILIES, make_hf_adapter
    from polyaudit.models.sequential import SequentialAdapter

    conv = is_convolutional(model) and not hasattr(model, "config")
    if pos is not None and not conv:
        raise PolyauditError(
            f"pos={pos} selects spatial positions of a convolutional network's feature maps; "
            f"a {type(model).__name__} without convolutions has none: drop ?pos="
        )
    if conv:
        if example is None or not example.is_floating_point():
            raise PolyauditError(
                f"a convolutional {type(model).__name__} needs example images to trace its layers: "
                "return (model, (images, labels)) from the factory"
            )
        return ConvAdapter(model, example, pos=pos or "center")
    if isinstance(model, nn.Sequential):
        return SequentialAdapter(model)
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return make_hf_adapter(model)
    raise PolyauditError(
        f"no adapter knows a {type(model).__name__}: polyaudit knows {KNOWN_FAMILIES}"
    )


def _own_adapter(spec: str, adapter: Adapter, pos: str | None) -> nn.Module:
    """The module of an adapter a factory made itself (checked), in eval mode with grads off."""
    model = getattr(adapter, "model", None)
    if not isinstance(model, nn.Module):
        raise PolyauditError(
            f"factory {spec!r} returned a {type(adapter).__name__} whose .model is a "
            f"{type(model).__name__}: an adapter's .model must be the torch.nn.Module it reads"
        )
    if pos is not None:
        raise PolyauditError(
            f"factory {spec!r} returns its own adapter, which picks its own positions: drop ?pos={pos}"
        )
    return model


def load_factory(spec: str, params: dict[str, str] | None = None) -> tuple[nn.Module, Adapter, Any, nn.Module | None, Any]:
    """Call the factory: (model in eval mode with grads off, its adapter, its probe or None, its own
    control twin or None). `params`: the spec's `?pos=` (a CNN's position selector). A factory
    returns a module or an adapter, `(module, probe)`, or a mapping with `model` (or `adapter`) and
    optionally `probe` and `control` (the same architecture, untrained or otherwise without what
    training taught it: used by --control=init) and `tokenizer` (a Hugging Face model's). Returns
    (model, adapter, probe, control, tokenizer)."""
    result = _import(spec)()
    probe_raw: Any = None
    control: Any = None
    tokenizer: Any = None
    if isinstance(result, Mapping):
        unknown = sorted(set(result) - {"model", "adapter", "probe", "control", "tokenizer"})
        if unknown or not ({"model", "adapter"} & set(result)):
            raise PolyauditError(
                f"factory {spec!r} returned a mapping with keys {sorted(result)}: give 'model' (or 'adapter') "
                "and optionally 'probe', 'control' and 'tokenizer'")
        control, probe_raw = result.get("control"), result.get("probe")
        tokenizer = result.get("tokenizer")
        result = result.get("adapter", result.get("model"))
    if isinstance(result, tuple):
        if len(result) != 2:
            raise PolyauditError(
                f"factory {spec!r} returned a tuple of {len(result)} items: "
                "return a module or an adapter, optionally with a probe: (module, probe)"
            )
        result, probe_raw = result
    pos = (params or {}).get("pos")
    own = result if isinstance(result, Adapter) else None
    if own is not None:
        result = _own_adapter(spec, own, pos)
    if not isinstance(result, nn.Module):
        raise PolyauditError(
            f"factory {spec!r} returned an object of type {type(result).__name__}, not a "
            "torch.nn.Module or a polyaudit Adapter: return a module, or (module, probe)"
        )
    model = result.eval()
    model.requires_grad_(False)
    probe = _as_probe(spec, probe_raw) if probe_raw is not None else None
    adapter = own if own is not None else make_adapter(model, None if probe is None else probe.inputs, pos)
    kind = getattr(probe, "kind", "vectors")
    if probe is not None and adapter.input_kind == "vectors" and kind != "vectors":
        raise PolyauditError(f"factory {spec!r} returned a {kind} probe for a vector model")
    if control is not None:
        control = _checked_control(spec, model, control)
    return model, adapter, probe, control, tokenizer


def _checked_control(spec: str, model: nn.Module, control: Any) -> nn.Module:
    """A factory's own control: a module with exactly the model's parameter names and shapes."""
    if isinstance(control, Adapter):
        control = control.model
    if not isinstance(control, nn.Module):
        raise PolyauditError(f"factory {spec!r} returned a control of type {type(control).__name__}: "
                             "return an nn.Module of the model's architecture")
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in control.state_dict().items()}
    if mine != theirs:
        diff = sorted(set(mine) ^ set(theirs)) or [k for k in mine if mine[k] != theirs.get(k)]
        raise PolyauditError(f"factory {spec!r} returned a control whose weights differ from the model's "
                             f"(e.g. {diff[0]}): return the same architecture")
    return control.eval()
