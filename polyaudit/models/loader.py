"""`load_model(spec)`: the one entry point from a `--model` spec to a LoadedModel.

Dispatches on the spec's kind (hub id or local folder -> transformers; `zoo:` -> the built-in zoo;
`module:callable` -> a user factory), places the model on the device, and records provenance: the
hub commit when known, a sha256 of the weights, the context length, the default probe.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from polyaudit.choices import DEVICES, DTYPE_NAMES
from polyaudit.errors import PolyauditError
from polyaudit.models.base import DTYPES, LoadedModel
from polyaudit.models.hashing import model_sha256
from polyaudit.models.hf import KNOWN_FAMILIES
from polyaudit.models.spec import parse_spec

__all__ = ["DEVICES", "DTYPE_NAMES", "KNOWN_FAMILIES", "load_model"]


def check_device(device: str) -> None:
    """One-line errors for an unknown device, or cuda asked for where there is none."""
    if device not in DEVICES:
        raise PolyauditError(f"unknown device {device!r}: use cpu, cuda or auto")
    if device == "cuda" and not torch.cuda.is_available():
        raise PolyauditError(
            f"device 'cuda' requested but torch {torch.__version__} sees no CUDA device: "
            "use --device=cpu (or auto to use a GPU only when there is one)"
        )


def check_dtype(dtype: str | None) -> None:
    if dtype is not None and dtype not in DTYPE_NAMES:
        raise PolyauditError(f"unknown dtype {dtype!r}: use {', '.join(DTYPE_NAMES)}")


def _smoke_ops(dtype: torch.dtype, device: torch.device) -> list[tuple[str, Any]]:
    """The kernels every family's forward uses, on tiny tensors of `dtype` on `device`."""
    import torch.nn.functional as F

    x = torch.linspace(-1.0, 1.0, 32, device=device).reshape(4, 8).to(dtype)
    w = torch.ones(6, 8, device=device, dtype=dtype)
    return [
        ("matmul (linear)", lambda: F.linear(x, w)),
        ("relu", lambda: F.relu(x)),
        ("gelu", lambda: F.gelu(x)),
        ("silu", lambda: F.silu(x)),
        ("layer_norm", lambda: F.layer_norm(x, (8,))),
        ("softmax", lambda: F.softmax(x, dim=-1)),
        ("embedding", lambda: F.embedding(torch.tensor([0, 3], device=device), w)),
    ]


def check_dtype_supported(dtype: torch.dtype, device: torch.device) -> None:
    """One line when this torch build cannot run the model's dtype on its device (e.g. a torch
    without half-precision CPU kernels, or bfloat16 on a GPU without it), found by running the
    kernels every forward needs on tiny tensors before any real work starts."""
    if dtype == torch.float32:
        return
    name = str(dtype).replace("torch.", "")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(
        including_emulation=False
    ):
        raise PolyauditError(
            f"dtype bfloat16 is not supported on {device} ({torch.cuda.get_device_name(device)}): "
            "use --dtype float16 or float32"
        )
    for op, run in _smoke_ops(dtype, device):
        try:
            run()
        except (RuntimeError, NotImplementedError) as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise PolyauditError(
                f"dtype {name} is not supported on {device.type} by torch {torch.__version__} "
                f"({op}: {why}): use --dtype float32, or a device that supports {name}"
            ) from None


def _place(model: nn.Module, device: str, dtype: str | None) -> nn.Module:
    """Move a zoo or factory model to the device and dtype ("auto"/None keep its dtype)."""
    if dtype in DTYPES:
        model = model.to(DTYPES[dtype])
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        model = model.to("cuda")
    return model


def _local_tokenizer(model: nn.Module) -> Any | None:
    """A factory's transformers model: its tokenizer when its config names a local folder."""
    from transformers import AutoTokenizer

    name = str(getattr(getattr(model, "config", None), "name_or_path", "") or "")
    if not name or not os.path.isdir(name):
        return None
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError):
        return None


def _load_transformers(
    spec: str,
    target: str,
    *,
    local: bool,
    device: str,
    dtype: str | None,
    revision: str | None,
    trust_remote_code: bool,
    cache_dir: str | None,
    progress: bool,
) -> LoadedModel:
    """A hub id or local folder through transformers. A sentence-transformers folder (or cached
    hub snapshot) with modules.json loads as its transformer, its pooling set on the adapter and
    the context capped at the length sentence-transformers truncates inputs to."""
    from polyaudit.models.hf_load import load_hf
    from polyaudit.models.sentence import find_pipeline, seq_limit

    spec_kind = "local" if local else "hub"
    pipe = find_pipeline(target, local=local, revision=revision, cache_dir=cache_dir)
    if pipe is not None and (local or pipe.transformer):  # a folder, or a snapshot's subfolder
        target, local = pipe.transformer_folder, True
    model, adapter, tokenizer, info = load_hf(
        target, local=local, device=device, dtype=dtype, revision=revision,
        trust_remote_code=trust_remote_code, cache_dir=cache_dir, progress=progress,
    )
    if pipe is not None:
        adapter.pooling = pipe.pooling
        info["revision"] = info["revision"] or pipe.revision
        limit, context = seq_limit(pipe, tokenizer), info["max_positions"]
        if limit is not None:
            info["max_positions"] = limit if context is None else min(context, limit)
        info["sentence_transformers"] = {"transformer": pipe.transformer or ".", "max_seq_length": limit}
        if pipe.pooling is not None:
            info["pooling"] = pipe.pooling.describe()
    return LoadedModel(
        spec=spec,
        model=model,
        adapter=adapter,
        tokenizer=tokenizer,
        default_probe="text:stdlib",
        revision=info["revision"],
        max_positions=info["max_positions"],
        meta={"kind": spec_kind, **info},
    )


def load_model(
    spec: str,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    progress: bool = False,
    hf_cache_dir: str | None = None,
) -> LoadedModel:
    """Load the model a spec names, in eval mode with grads off, with its adapter and provenance.

    `dtype` None keeps the checkpoint's dtype ("auto"). `cache_dir` is polyaudit's cache root
    (--cache-dir; default $POLYAUDIT_CACHE or ~/.cache/polyaudit), where the zoo is cached.
    `revision`, `trust_remote_code` and `hf_cache_dir` (the Hugging Face hub cache; default
    transformers' own, from HF_HOME / HF_HUB_CACHE) apply to hub ids and local folders only.
    """
    check_device(device)
    check_dtype(dtype)
    parsed = parse_spec(spec)
    if revision is not None and parsed.kind in ("zoo", "factory"):
        raise PolyauditError(
            f"--revision applies to hub models, not to {parsed.kind} spec {spec!r}: drop it"
        )

    if parsed.kind in ("hub", "local"):
        loaded = _load_transformers(
            spec, parsed.target, local=parsed.kind == "local", device=device, dtype=dtype,
            revision=revision, trust_remote_code=trust_remote_code, cache_dir=hf_cache_dir,
            progress=progress,
        )
    elif parsed.kind == "zoo":
        from polyaudit.models.zoo import REGISTRY, load_zoo, zoo_adapter

        net, info = load_zoo(parsed.target, parsed.params, cache_dir=cache_dir, progress=progress)
        net = _place(net, device, dtype)
        loaded = LoadedModel(
            spec=spec,
            model=net,
            adapter=zoo_adapter(REGISTRY[parsed.target], net, info["params"]),
            default_probe=info["default_probe"],
            revision=f"zoo-recipe-v{info['recipe_version']}",
            meta={"kind": "zoo", **info},
        )
    else:
        from polyaudit.models.factory import load_factory
        from polyaudit.models.hf_load import max_positions

        net, adapter, probe, control, tok = load_factory(parsed.target, parsed.params)
        net = _place(net, device, dtype)
        tokens = adapter.input_kind == "tokens"
        loaded = LoadedModel(
            spec=spec,
            model=net,
            adapter=adapter,
            probe=probe,
            tokenizer=(tok if tok is not None else _local_tokenizer(net)) if tokens else None,
            default_probe=probe.name if probe is not None else ("text:stdlib" if tokens else None),
            max_positions=max_positions(getattr(net, "config", None)) if tokens else None,
            meta={"kind": "factory", **({"control": control} if control is not None else {})},
        )
    check_dtype_supported(loaded.adapter.dtype, loaded.adapter.device)
    loaded.sha256 = model_sha256(loaded.model)
    return loaded
