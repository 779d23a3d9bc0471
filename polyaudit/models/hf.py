"""Hugging Face models: loading through transformers, and the site table of each family.

A family is a LAYOUT: where the list of blocks lives, and, relative to one block, which module's
output is the MLP pre-activation (`mlp_pre`: the input of the nonlinearity; for gated MLPs the gate
input), the MLP output (`mlp_out`) and the residual stream (`resid`: the block's output).

    GPT-2      h.{i}          mlp.c_fc (Conv1D)      mlp            h.{i}
    GPT-NeoX   layers.{i}     mlp.dense_h_to_4h      mlp            layers.{i}
    Llama      layers.{i}     mlp.gate_proj          mlp            layers.{i}
    OPT        layers.{i}     fc1                    fc2            layers.{i}
    BERT       layer.{i}      intermediate.dense     output.dense   layer.{i}

The prefix before the block list differs between AutoModel and the *ForCausalLM / *ForMaskedLM
classes (`transformer.h` vs `h`), so it is resolved on the loaded model. The family comes from
`config.model_type`, falling back to the module structure for model types sharing a layout.
Weights load through `from_pretrained` only: safetensors preferred, pickle checkpoints through
`torch.load(weights_only=True)`, never a full unpickle.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter, Reader, Site, SiteKind, Writer, _first


@dataclass(frozen=True)
class Layout:
    family: str
    model_types: frozenset[str]
    blocks: str  # name (suffix) of the ModuleList of blocks
    mlp_pre: str  # relative to one block; the site is that module's output
    mlp_out: str
    encoder: bool = False
    flat_mlp: bool = False  # MLP on [batch * seq, d] (OPT): sites viewed as [batch, seq, d]


_GATED = "llama mistral qwen2 qwen3 gemma gemma2 gemma3_text olmo olmo2 granite"
LAYOUTS: tuple[Layout, ...] = (
    Layout("gpt2", frozenset({"gpt2"}), "h", "mlp.c_fc", "mlp"),
    Layout("gpt_neox", frozenset({"gpt_neox"}), "layers", "mlp.dense_h_to_4h", "mlp"),
    Layout("llama", frozenset(_GATED.split()), "layers", "mlp.gate_proj", "mlp"),
    Layout("opt", frozenset({"opt"}), "layers", "fc1", "fc2", flat_mlp=True),
    Layout(
        "bert",
        frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"}),
        "layer",
        "intermediate.dense",
        "output.dense",
        encoder=True,
    ),
)
KNOWN_FAMILIES = (
    "gpt2, gpt_neox (pythia), llama-style gated MLPs (llama, mistral, qwen2, qwen3, gemma), "
    "opt, bert-style encoders (bert, roberta), and nn.Sequential MLPs through a factory"
)
PIECEWISE_LINEAR = frozenset({"relu", "leaky_relu", "leakyrelu", "relu6", "prelu"})
ENCODER_TYPES = frozenset(t for lay in LAYOUTS if lay.encoder for t in lay.model_types)
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_ACT_ATTRS = ("hidden_activation", "activation_function", "hidden_act")


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def _find_blocks(model: nn.Module, layout: Layout) -> str | None:
    """Dotted path of the ModuleList of blocks that has the layout's modules, shortest first."""
    found = [
        name
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList)
        and len(mod) > 0
        and (name == layout.blocks or name.endswith("." + layout.blocks))
        and all(_has(b, layout.mlp_pre) and _has(b, layout.mlp_out) for b in mod)
    ]
    return min(found, key=lambda n: (n.count("."), n)) if found else None


def activation_name(config: Any) -> str:
    for attr in _ACT_ATTRS:
        name = getattr(config, attr, None)
        if isinstance(name, str) and name:
            return name.lower()
    return "unknown"


class HFAdapter(Adapter):
    """Sites of a transformers model, by layout. `input_kind` is always "tokens"."""

    input_kind = "tokens"

    def __init__(self, model: nn.Module, layout: Layout, blocks: str) -> None:
        super().__init__(model)
        self.layout = layout
        self.blocks = blocks
        self.family = layout.family
        self.n_layers = len(model.get_submodule(blocks))  # type: ignore[arg-type]
        config = getattr(model, "config", None)
        self.activation = activation_name(config)
        self.piecewise_linear = self.activation in PIECEWISE_LINEAR
        self._use_cache = (not layout.encoder) and hasattr(config, "use_cache")

    def _site(self, kind: SiteKind, layer: int) -> Site:
        rel = {"mlp_pre": self.layout.mlp_pre, "mlp_out": self.layout.mlp_out, "resid": ""}[kind]
        path = f"{self.blocks}.{layer}" + (f".{rel}" if rel else "")
        return Site(layer=layer, kind=kind, module=path)

    def rank_bound(self, site: Site) -> int | None:
        """mlp_pre is the up- (or gate) projection of a hidden_size-wide vector."""
        config = getattr(self.model, "config", None)
        hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
        return int(hidden) if site.kind == "mlp_pre" and isinstance(hidden, int) else None

    @contextlib.contextmanager
    def hooks(
        self,
        reads: Mapping[Site, Reader] | None = None,
        writes: Mapping[Site, Writer] | None = None,
        stop_when_done: bool = False,
    ) -> Iterator[None]:
        """As Adapter.hooks; where the MLP runs on flattened tokens (OPT), readers and writers see
        [batch, seq, d] like every other site (the batch shape is taken from the model's input)."""
        if not self.layout.flat_mlp:
            with super().hooks(reads, writes, stop_when_done):
                yield
            return
        shape: list[tuple[int, int]] = []

        def record(_mod: nn.Module, args: Any, kwargs: Any) -> None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            if isinstance(ids, torch.Tensor) and ids.dim() == 2:
                shape[:] = [(int(ids.shape[0]), int(ids.shape[1]))]

        def view(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(*shape[0], t.shape[-1]) if t.dim() == 2 and shape else t

        def read(r: Reader) -> Reader:
            return lambda site, t: r(site, view(t))

        def write(w: Writer) -> Writer:
            return lambda site, t: w(site, view(t)).reshape(t.shape)

        handle = self.model.register_forward_pre_hook(record, with_kwargs=True)
        try:
            with super().hooks(
                {s: read(r) for s, r in (reads or {}).items()},
                {s: write(w) for s, w in (writes or {}).items()},
                stop_when_done,
            ):
                yield
        finally:
            handle.remove()

    def _call(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        kwargs: dict[str, Any] = {"input_ids": inputs, "return_dict": True}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask.to(inputs.device)
        if self._use_cache:
            kwargs["use_cache"] = False
        return self.model(**kwargs)

    def _logits(self, output: Any) -> torch.Tensor:
        logits = getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits
        return _first(output)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "blocks": self.blocks,
            "model_type": getattr(getattr(self.model, "config", None), "model_type", None),
        }


def make_hf_adapter(model: nn.Module) -> HFAdapter:
    """The adapter of a loaded transformers model: by model_type, else by module structure."""
    config = getattr(model, "config", None)
    model_type = str(getattr(config, "model_type", "") or "")
    ordered = sorted(LAYOUTS, key=lambda lay: model_type not in lay.model_types)
    for layout in ordered:
        blocks = _find_blocks(model, layout)
        if blocks is not None:
            return HFAdapter(model, layout, blocks)
    arch = ",".join(getattr(config, "architectures", None) or [type(model).__name__])
    raise PolyauditError(
        f"unknown architecture {model_type or '?'} ({arch}): no adapter knows its layout; "
        f"polyaudit knows {KNOWN_FAMILIES}"
    )


# --- loading ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """Silence transformers' progress bars and load reports for the duration (restored after)."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    if not progress:
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _first_line(e: BaseException) -> str:
    """The first sentence of an exception's message (transformers' messages are paragraphs)."""
    text = str(e).strip().splitlines()
    first = text[0].split(". ")[0] if text else ""
    return first.rstrip(".") or type(e).__name__


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    return bool(constants.HF_HUB_OFFLINE) or env


def _config_error(
    target: str, local: bool, e: Exception, revision: str | None = None
) -> PolyauditError:
    if isinstance(e, ValueError) and "trust_remote_code" in str(e):
        return PolyauditError(
            f"model {target!r} needs to run its own Python code (auto_map in its config), which polyaudit "
            "never runs unless asked: pass --trust-remote-code only if you trust its author"
        )
    if local or not isinstance(e, OSError):
        return PolyauditError(
            f"cannot read the config of {target!r}: {_first_line(e)}; "
            "pass a folder written by save_pretrained"
        )
    why = (
        "HF_HUB_OFFLINE is set"
        if _offline()
        else "the hub could not be reached or has no such model"
    )
    at = f" at revision {revision!r}" if revision else ""
    return PolyauditError(
        f"cannot load {target!r}{at} from the Hugging Face hub: it is not in the local cache and "
        f"{why}; download it once with network access, or pass a local folder"
    )


def _auto_classes(config: Any) -> list[Any]:
    import transformers as tf
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    archs = list(getattr(config, "architectures", None) or [])
    mt = config.model_type
    if (
        mt in ENCODER_TYPES or any(a.endswith("ForMaskedLM") for a in archs)
    ) and mt in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return [tf.AutoModelForMaskedLM, tf.AutoModel]
    if mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return [tf.AutoModelForCausalLM, tf.AutoModel]
    return [tf.AutoModel]


def _weights_error(target: str, e: Exception) -> PolyauditError:
    from safetensors import SafetensorError

    if isinstance(e, pickle.UnpicklingError):
        return PolyauditError(
            f"refusing to unpickle the checkpoint of {target!r}: it holds more than tensors "
            "(torch.load(weights_only=True) rejected it); convert it to safetensors from a trusted copy"
        )
    if isinstance(e, SafetensorError):
        return PolyauditError(
            f"corrupt weights in {target!r}: {_first_line(e)}; "
            "re-save or re-download the checkpoint"
        )
    return PolyauditError(
        f"cannot load the weights of {target!r}: {_first_line(e)}; "
        "check the folder holds a complete checkpoint"
    )


def _commit_hash(target: str, revision: str | None, cache_dir: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(target, "config.json", cache_dir=cache_dir, revision=revision)
    m = (
        re.search(r"snapshots/([0-9a-f]{40})/", str(path).replace(os.sep, "/"))
        if isinstance(path, str)
        else None
    )
    return m.group(1) if m else revision


def _snapshot_folder(target: str, revision: str | None, cache_dir: str | None) -> str | None:
    """The local snapshot folder of a hub id already in the cache (None when it is not)."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(target, "config.json", cache_dir=cache_dir, revision=revision)
    return os.path.dirname(path) if isinstance(path, str) else None


def max_positions(config: Any) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_hf(
    target: str,
    *,
    local: bool,
    device: str = "cpu",
    dtype: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    progress: bool = False,
) -> tuple[nn.Module, HFAdapter, Any, dict[str, Any]]:
    """Load a hub id or a save_pretrained folder: (model, adapter, tokenizer, info).

    `device` is "cpu", "cuda" or "auto" (accelerate's device_map="auto" when cuda is available);
    `dtype` None means "auto": the checkpoint's own dtype. info has revision and max_positions.
    """
    import transformers as tf
    from safetensors import SafetensorError

    if local and not os.path.isfile(os.path.join(target, "config.json")):
        raise PolyauditError(
            f"folder {target!r} has no config.json: pass a folder written by "
            "save_pretrained (model and tokenizer)"
        )
    hub = {"revision": revision, "cache_dir": cache_dir, "trust_remote_code": trust_remote_code}
    with _quiet(progress):
        try:
            config = tf.AutoConfig.from_pretrained(target, **hub)
        except (OSError, ValueError, KeyError) as e:
            raise _config_error(target, local, e, revision) from e
        torch_dtype: Any = "auto" if dtype in (None, "auto") else DTYPES[dtype]
        device_map: Any = None
        if device == "auto" and torch.cuda.is_available():
            device_map = "auto"  # accelerate spreads the weights over the GPUs and the host
        else:
            folder = target if local else _snapshot_folder(target, revision, cache_dir)
            if folder is not None:
                from polyaudit.models.memory import check_load_fits

                check_load_fits(target, folder, DTYPES.get(dtype or "auto"), device)
        model: nn.Module | None = None
        missing: list[str] = []
        for cls in _auto_classes(config):
            try:
                candidate, info = cls.from_pretrained(
                    target,
                    config=config,
                    dtype=torch_dtype,
                    device_map=device_map,
                    weights_only=True,
                    output_loading_info=True,
                    **hub,
                )
            except (
                OSError,
                ValueError,
                RuntimeError,
                SafetensorError,
                pickle.UnpicklingError,
            ) as e:
                if local or not isinstance(e, OSError) or "connect" not in str(e):
                    raise _weights_error(target, e) from e
                raise _config_error(target, local, e, revision) from e
            missing = sorted(info.get("missing_keys", ()))
            if not missing:
                model = candidate
                break
        if model is None:
            raise PolyauditError(
                f"checkpoint {target!r} lacks {len(missing)} weight tensor(s) (e.g. {missing[0]}): the model "
                "would be partly random; pass a complete checkpoint"
            )
    model.eval()
    model.requires_grad_(False)
    adapter = make_hf_adapter(model)  # before the tokenizer: an unknown architecture is the news
    with _quiet(progress):
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(target, **hub)
        except (OSError, ValueError, KeyError) as e:
            raise PolyauditError(
                f"cannot load a tokenizer for {target!r}: {_first_line(e)}; "
                "save one next to the model (tokenizer.save_pretrained)"
            ) from e
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if device == "cuda":
        model = model.to("cuda")
    info_out = {
        "revision": None if local else _commit_hash(target, revision, cache_dir),
        "max_positions": max_positions(config),
        "model_type": config.model_type,
        "class": type(model).__name__,
    }
    return model, adapter, tokenizer, info_out
