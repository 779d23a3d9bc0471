"""Hugging Face models: the site table of each family and its adapter.

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
Loading is `polyaudit.models.hf_load`. The adapter's capabilities come from the
layout (encoder or causal, gated MLP) and the loaded model (whether it has an output head).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import (
    PIECEWISE_LINEAR,
    Adapter,
    Capabilities,
    OwnStates,
    PrefixCache,
    Reader,
    Site,
    SiteKind,
    Writer,
    _first,
)


@dataclass(frozen=True)
class Layout:
    family: str
    model_types: frozenset[str]
    blocks: str  # name (suffix) of the ModuleList of blocks
    mlp_pre: str  # relative to one block; the site is that module's output
    mlp_out: str
    encoder: bool = False
    flat_mlp: bool = False  # MLP on [batch * seq, d] (OPT): sites viewed as [batch, seq, d]
    gated: bool = False  # mlp_pre is the gate input of a gated MLP
    # activation parity (polyaudit.models.parity): the MLP's activation and down projection relative
    # to a block (mlp_out == down(act(mlp_pre)) for non-gated MLPs), and the final norm's name, which
    # the model applies to the last block's output before it reports it as a hidden state
    act: str | None = None
    down: str | None = None
    final_norm: tuple[str, ...] = ()


_GATED = "llama mistral qwen2 qwen3 gemma gemma2 gemma3_text olmo olmo2 granite"
LAYOUTS: tuple[Layout, ...] = (
    Layout("gpt2", frozenset({"gpt2"}), "h", "mlp.c_fc", "mlp", act="mlp.act", down="mlp.c_proj",
           final_norm=("ln_f",)),
    Layout("gpt_neox", frozenset({"gpt_neox"}), "layers", "mlp.dense_h_to_4h", "mlp", act="mlp.act",
           down="mlp.dense_4h_to_h", final_norm=("final_layer_norm",)),
    Layout("llama", frozenset(_GATED.split()), "layers", "mlp.gate_proj", "mlp", gated=True, final_norm=("norm",)),
    Layout("opt", frozenset({"opt"}), "layers", "fc1", "fc2", flat_mlp=True, act="activation_fn", down="fc2",
           final_norm=("final_layer_norm", "project_out")),
    Layout(
        "bert",
        frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"}),
        "layer",
        "intermediate.dense",
        "output.dense",
        encoder=True,
        act="intermediate.intermediate_act_fn",
        down="output.dense",
    ),
)
KNOWN_FAMILIES = (
    "gpt2, gpt_neox (pythia), llama-style gated MLPs (llama, mistral, qwen2, qwen3, gemma), "
    "opt, bert-style encoders (bert, roberta), and nn.Sequential MLPs through a factory"
)
ENCODER_TYPES = frozenset(t for lay in LAYOUTS if lay.encoder for t in lay.model_types)
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
        self.capabilities = Capabilities(
            causal=not layout.encoder,
            encoder=layout.encoder,
            gated_mlp=layout.gated,
            output_head=self.output_head() is not None,
            prefix_cache=not layout.encoder,  # every causal layout takes past_key_values
        )

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

    # --- model accesses ----------------------------------------------------------------------
    @torch.inference_mode()
    def own_states(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None) -> OwnStates | None:
        reads: dict[Site, torch.Tensor] = {}

        def keep(site: Site, t: torch.Tensor) -> None:
            reads[site] = t.detach().clone()

        sites = [s for kind in self.site_kinds for s in self.sites(kind)]
        kwargs: dict[str, Any] = {"input_ids": self.prepare(inputs), "return_dict": True, "output_hidden_states": True}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask.to(self.device)
        if self._use_cache:
            kwargs["use_cache"] = False
        with self.hooks(reads=dict.fromkeys(sites, keep)):
            out = self.model(**kwargs)
        hidden = getattr(out, "hidden_states", None)
        if not hidden:
            return None
        return OwnStates(tuple(hidden), reads, self._final(), self._mlp_out())

    def _final(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The modules the model applies to the last block's output before it reports it (final
        norm, projection), found beside the block list."""
        base = self.blocks.rpartition(".")[0]
        mods = []
        for name in self.layout.final_norm:
            path = f"{base}.{name}" if base else name
            mod = self.model.get_submodule(path) if _has(self.model, path) else None
            if isinstance(mod, nn.Module):
                mods.append(mod)
        if not mods:
            return None

        def apply(t: torch.Tensor) -> torch.Tensor:
            for mod in mods:
                t = mod(t)
            return t

        return apply

    def _mlp_out(self) -> Callable[[int, torch.Tensor], torch.Tensor] | None:
        """mlp_pre -> the MLP output it implies (down(act(pre))), for non-gated MLPs."""
        lay = self.layout
        if lay.gated or lay.act is None or lay.down is None:
            return None
        act_path, down_path = lay.act, lay.down

        def recompute(layer: int, pre: torch.Tensor) -> torch.Tensor:
            block = self.model.get_submodule(f"{self.blocks}.{layer}")
            act: Any = block
            for part in act_path.split("."):
                act = getattr(act, part)
            return block.get_submodule(down_path)(act(pre))

        return recompute

    def block_modules(self) -> list[nn.Module]:
        """The transformer blocks (the layout's ModuleList)."""
        return list(self.model.get_submodule(self.blocks))  # type: ignore[call-overload]

    @property
    def vocab_size(self) -> int | None:
        value = getattr(getattr(self.model, "config", None), "vocab_size", None)
        return int(value) if value else None

    def output_head(self) -> nn.Module | None:
        """The LM / MLM decoder (`get_output_embeddings()`); None for a model loaded without one."""
        get = getattr(self.model, "get_output_embeddings", None)
        head = get() if callable(get) else None
        return head if isinstance(head, nn.Module) else None

    def input_embedding_site(self) -> Site | None:
        """The output of the module `get_input_embeddings()` returns (token embeddings only:
        positional embeddings, layer norms and attention act on it as on any token)."""
        get = getattr(self.model, "get_input_embeddings", None)
        emb = get() if callable(get) else None
        path = next((n for n, m in self.model.named_modules() if m is emb), None) if emb is not None else None
        return None if path is None else Site(layer=-1, kind="resid", module=path)

    def input_embedding_weight(self) -> torch.Tensor:
        site = self.input_embedding_site()
        if site is None:
            raise PolyauditError(
                f"{type(self.model).__name__} names no input embedding module (get_input_embeddings)"
            )
        weight = self.model.get_submodule(site.module).weight
        if not isinstance(weight, torch.Tensor):
            raise PolyauditError(f"the input embedding {site.module!r} has no weight table")
        return weight.detach()

    @torch.inference_mode()
    def prefix_cache(self, ids: torch.Tensor) -> PrefixCache:
        if not self.capabilities.prefix_cache:
            return super().prefix_cache(ids)
        ids = ids.to(self.device)
        out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                         return_dict=True)
        return PrefixCache(getattr(out, self._cache_name), int(ids.shape[1]))

    @torch.inference_mode()
    def cached_logits(self, tokens: torch.Tensor, prefix: PrefixCache) -> torch.Tensor:
        if not self.capabilities.prefix_cache:
            return super().cached_logits(tokens, prefix)
        b = int(tokens.shape[0])
        past = _repeat_cache(prefix.state, b)
        attention = torch.ones((b, prefix.length + 1), dtype=torch.long, device=self.device)
        kwargs = {self._cache_name: past}
        out = self.model(input_ids=tokens.to(self.device), attention_mask=attention, use_cache=True,
                         return_dict=True, **kwargs)
        return self._logits(out)[:, -1]

    @functools.cached_property
    def _cache_name(self) -> str:
        """The key/value cache's name in this transformers release's forward and outputs: `cache`
        (transformers 5), `past_key_values` (before; deprecated in 5)."""
        params = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "blocks": self.blocks,
            "model_type": getattr(getattr(self.model, "config", None), "model_type", None),
        }


def _repeat_cache(state: Any, b: int) -> Any:
    """A copy of a one-row key/value cache repeated to b rows: a Cache object (transformers'
    `batch_repeat_interleave`), or the legacy tuple of (key, value) tensors of older releases."""
    if hasattr(state, "batch_repeat_interleave"):
        past = copy.deepcopy(state)
        past.batch_repeat_interleave(b)
        return past
    if isinstance(state, torch.Tensor):
        return state.repeat_interleave(b, dim=0)
    return type(state)(_repeat_cache(s, b) for s in state)


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
