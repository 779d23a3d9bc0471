"""Sites and the Adapter contract: where activations live in a model, and how to read or replace them.

A SITE is one tensor inside one layer: the pre-activation of the MLP nonlinearity (`mlp_pre`; for
gated MLPs the gate input), the MLP output (`mlp_out`), or the residual stream after the layer
(`resid`). Stable names follow TransformerLens' habit: `blocks.3.mlp.pre`, `blocks.3.mlp.out`,
`blocks.3.resid`. Hooks exist only inside the `hooks()` context manager (removed in `finally`).

The forward pass stops as soon as every hooked site has fired (`StopForward`), so nothing past the
deepest site a claim needs is computed (no LM head unless a claim reads outputs).

An adapter DECLARES what its model can do (`Capabilities`: causal, encoder, gated MLP, output head,
prefix cache, whole feature maps, spatial positions, exact walks) and exposes every model access an
intervention needs as a method (`output_head`, `logits_from`, `input_embedding_site`,
`input_embedding_weight`, `vocab_size`, `prefix_cache` / `cached_logits`, `modules_after`,
`feature_maps`, `select`), so nothing outside `polyaudit.models` probes types, family names or
private attributes (scikit-learn's estimator tags). `polyaudit.models.check.check_adapter` tests an
adapter, a user's own included, against this contract.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.pooling import Pooling

# activation names (transformers configs, nn module classes) that are piecewise linear: spline codes exact
PIECEWISE_LINEAR = frozenset({"relu", "leaky_relu", "leakyrelu", "relu6", "prelu"})
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

SiteKind = Literal["mlp_pre", "mlp_out", "resid"]
SITE_KINDS: tuple[SiteKind, ...] = ("mlp_pre", "mlp_out", "resid")
_ORDER = {"mlp_pre": 0, "mlp_out": 1, "resid": 2}

Reader = Callable[["Site", torch.Tensor], None]
Writer = Callable[["Site", torch.Tensor], torch.Tensor]


@dataclass(frozen=True, order=True)
class Site:
    """One tensor in one layer. `module` is the dotted path of the hooked module; `tap` says
    whether the site is that module's output or its first input."""

    layer: int
    kind: SiteKind
    module: str
    tap: Literal["output", "input"] = "output"

    @property
    def name(self) -> str:
        return {"mlp_pre": f"blocks.{self.layer}.mlp.pre", "mlp_out": f"blocks.{self.layer}.mlp.out",
                "resid": f"blocks.{self.layer}.resid"}[self.kind]

    @property
    def depth_key(self) -> tuple[int, int]:
        return (self.layer, _ORDER[self.kind])

    @property
    def path(self) -> str:
        """The dotted path of the hooked module (`module` without a `#k` call index)."""
        return self.module.partition("#")[0]

    @property
    def call(self) -> int:
        """Which call of the module the site is, when a forward calls it several times: `path#k` is
        the k-th call (0-based), a plain path the first."""
        k = self.module.partition("#")[2]
        return int(k) if k else 0


@dataclass(frozen=True)
class Capabilities:
    """What an adapter's model can do, declared by the adapter; generic code reads these flags
    instead of probing types, family names or attributes. Defaults are the conservative answer
    for a model nothing is known about (every flag but `output_head` off).

    causal: a token model whose position i sees only tokens <= i (decoder-only LM): a forward may
        stop at the last position it needs, and its output is a next-token distribution.
    encoder: a bidirectional token model (BERT-style) whose head scores the input tokens themselves.
    gated_mlp: `mlp_pre` is the GATE input of a gated MLP (Llama-style): codes are the gate's signs.
    output_head: `logits()` is an output distribution (LM / MLM head, classifier, or the output a
        vector model is scored on); False: hidden states only (a transformers model without head).
    prefix_cache: `prefix_cache()` and `cached_logits()` work: the key/value cache of a prefix is
        computed once and later tokens run one at a time (causal LMs with `past_key_values`).
    feature_maps: sites are feature maps; `feature_maps()` reads a site's whole map per input, and
        interventions perturb whole maps.
    spatial_positions: `run_until` readers get the channel vectors at selected spatial positions
        (`select`): `positions_per_input` samples per input, chosen by `position_selector`.
    exact_walk: the model is affine maps and piecewise-linear nonlinearity MODULES throughout, so
        boundary crossings may be walked exactly on a float64 copy (the walker may still refuse a
        module it cannot gate, e.g. max pooling, and say why).
    """

    causal: bool = False
    encoder: bool = False
    gated_mlp: bool = False
    output_head: bool = True
    prefix_cache: bool = False
    feature_maps: bool = False
    spatial_positions: bool = False
    exact_walk: bool = False


@dataclass(frozen=True)
class PrefixCache:
    """The key/value cache of one token prefix (`Adapter.prefix_cache`): the model's own cache
    object, opaque to callers, and the prefix length."""

    state: Any
    length: int


@dataclass(frozen=True)
class OwnStates:
    """One forward of a few inputs in which the adapter read every site and the model reported its
    own hidden states (`Adapter.own_states`), for the activation parity check
    (`polyaudit.models.parity`)."""

    hidden: tuple[Any, ...]  # the model's own hidden states: [0] the embeddings, [l + 1] after block l
    reads: dict[Site, Any]  # what the adapter read at each of its sites, in the same forward
    final: Callable[[Any], Any] | None = None  # what the model applies to the last block's output first
    mlp_out: Callable[[int, Any], Any] | None = None  # layer, mlp_pre -> the MLP output it implies


class StopForward(Exception):
    """Raised by a hook once every requested site has fired: ends the truncated forward."""


def _first(x: Any) -> torch.Tensor:
    """Blocks return a tensor or a tuple whose first item is the hidden state."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    if hasattr(x, "last_hidden_state"):
        return x.last_hidden_state
    raise PolyauditError(f"cannot find a tensor in a module output of type {type(x).__name__}")


class Adapter:
    """Base adapter. Families fill in the site table and how to call the model.

    Subclasses set: `family`, `input_kind` ("tokens" | "vectors"), `activation` (name of the MLP
    nonlinearity), `piecewise_linear` (True for ReLU/leaky ReLU: spline codes exact), `n_layers`,
    `capabilities` (what the model can do, see `Capabilities`), and implement
    `_site(kind, layer) -> Site`, `_call(inputs, attention_mask)` and `_logits(output)`; and
    override the accessors their capabilities promise (`output_head`, `input_embedding_site`,
    `prefix_cache`, `modules_after`, `feature_maps`, ...). A factory may return such an adapter
    (`polyaudit.models.factory`); `polyaudit.models.check.check_adapter` tests it.
    """

    family: str = "?"
    input_kind: Literal["tokens", "vectors"] = "tokens"
    activation: str = "?"
    piecewise_linear: bool = False
    n_layers: int = 0
    site_kinds: tuple[SiteKind, ...] = SITE_KINDS
    capabilities: Capabilities = Capabilities()
    positions_per_input: int = 1  # samples per input a `run_until` reader gets (spatial_positions)
    pooling: Pooling | None = None  # a sentence encoder's pooling (sentence-transformers folders)

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    # --- sites -------------------------------------------------------------------------------
    def _site(self, kind: SiteKind, layer: int) -> Site:
        raise NotImplementedError

    def sites(self, kind: SiteKind) -> list[Site]:
        """One site of this kind per layer, shallow to deep."""
        if kind not in self.site_kinds:
            raise PolyauditError(
                f"site kind {kind!r} does not exist in a {self.family} model; it has: {', '.join(self.site_kinds)}"
            )
        return [self._site(kind, layer) for layer in range(self.n_layers)]

    def site(self, kind: SiteKind, layer: int) -> Site:
        if not 0 <= layer < self.n_layers:
            raise PolyauditError(f"layer {layer} out of range: the model has {self.n_layers} layers")
        return self.sites(kind)[layer]

    def rank_bound(self, site: Site) -> int | None:
        """An upper bound on the rank of the site's (centred) activations when the architecture
        fixes one, e.g. an up-projection's pre-activations are an affine image of a d_model-wide
        vector: d_mlp units, rank at most d_model. Spectra must not read float16 rounding noise in
        the dimensions past it as a tail. None: no bound known."""
        return None

    def module(self, site: Site) -> nn.Module:
        """The module a site hooks (for `path#k`, the module called k times before)."""
        try:
            return self.model.get_submodule(site.path)
        except AttributeError as e:
            raise PolyauditError(
                f"the {self.family} adapter names module {site.module!r}, which this model lacks", site=site.name
            ) from e

    # --- running -----------------------------------------------------------------------------
    def _call(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        raise NotImplementedError

    def _logits(self, output: Any) -> torch.Tensor:
        raise NotImplementedError

    def logits_from(self, output: Any) -> torch.Tensor:
        """The logits in a model output (what the model's forward returned)."""
        return self._logits(output)

    # --- model accesses interventions make (override what the capabilities promise) ------------
    @property
    def position_selector(self) -> str | None:
        """Which spatial positions `run_until` readers get, as text (`center`, `all`, `I,J`);
        None for a model without spatial positions."""
        return None

    def select(self, site: Site, t: torch.Tensor) -> torch.Tensor:
        """What a `run_until` reader gets of a site's tensor `t` (as `hooks()` sees it): `t`
        itself, or for spatial positions the selected channel vectors ([B, C] or [B, G, C])."""
        return t

    @property
    def vocab_size(self) -> int | None:
        """Token models: the vocabulary size (rows of the input embedding, columns of the logits);
        None where unknown or for vector models."""
        return None

    def output_head(self) -> nn.Module | None:
        """The output head module of a token model (LM / MLM decoder) whose FIRST input is the
        final hidden state [batch, seq, d]; None when there is none or it is not one module."""
        return None

    def input_embedding_site(self) -> Site | None:
        """A token model's token-embedding module output [batch, seq, d] as a writable site
        (layer -1); None when the adapter does not know one."""
        return None

    def input_embedding_weight(self) -> torch.Tensor:
        """The token embedding table [vocab, d] the `input_embedding_site` looks rows up in."""
        raise PolyauditError(f"the {self.family} adapter names no input embedding table")

    def own_states(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None) -> OwnStates | None:
        """The model's own view of its hidden states beside what this adapter reads (one forward);
        None when the model reports none (then there is nothing independent to check against)."""
        return None

    def prefix_cache(self, ids: torch.Tensor) -> PrefixCache:
        """The key/value cache of one token prefix `ids` [1, p] (capabilities.prefix_cache)."""
        raise PolyauditError(f"the {self.family} adapter has no prefix cache (capabilities.prefix_cache is off)")

    def cached_logits(self, tokens: torch.Tensor, prefix: PrefixCache) -> torch.Tensor:
        """Logits [b, vocab] of one token per row (`tokens` [b, 1]) read after the cached prefix;
        the prefix's cache is copied, never changed. Hooks see [b, 1, d] at every site."""
        raise PolyauditError(f"the {self.family} adapter has no prefix cache (capabilities.prefix_cache is off)")

    def block_modules(self) -> Sequence[nn.Module] | None:
        """The model's blocks in order, where a site of layer i lies in block i (or is its output)
        and block i + 1 reads only block i's output besides what the model computes before its
        first block (embeddings, masks, position encodings): then a run can replay the blocks
        before a site from a recorded run (`polyaudit.interventions.unit_dropout.resume_after`).
        None where the model is not such a chain."""
        return None

    def modules_after(self, site: Site | None) -> nn.Sequential | None:
        """The modules that run after `site` (None: the input) as a flat nn.Sequential, when the
        model is one (so `modules_after(site)(h)` are the logits); None otherwise."""
        return None

    def feature_maps(self, inputs: torch.Tensor, site: Site, batch_size: int = 256) -> Any:
        """float64 [n, C * H * W]: a site's whole activation per input (capabilities.feature_maps)."""
        raise PolyauditError(f"the {self.family} adapter has no feature maps (capabilities.feature_maps is off)")

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in self.model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        """Move a batch of inputs to the model's device (and float dtype for vector inputs)."""
        if inputs.is_floating_point():
            return inputs.to(device=self.device, dtype=self.dtype)
        return inputs.to(self.device)

    @contextlib.contextmanager
    def hooks(
        self,
        reads: Mapping[Site, Reader] | None = None,
        writes: Mapping[Site, Writer] | None = None,
        stop_when_done: bool = False,
    ) -> Iterator[None]:
        """Temporary hooks: `reads[site](site, tensor)` sees a site's tensor, `writes[site]` returns a
        replacement for it. With `stop_when_done`, the forward raises StopForward once every read
        and write has fired (catch it with `run_until`)."""
        reads = dict(reads or {})
        writes = dict(writes or {})
        pending: set[Site] = set(reads) | set(writes)
        handles: list[Any] = []

        def fired(site: Site) -> None:
            pending.discard(site)
            if stop_when_done and not pending:
                raise StopForward

        def make_out_hook(site: Site) -> Callable[..., Any]:
            def hook(_mod: nn.Module, _args: Any, output: Any) -> Any:
                t = _first(output)
                result = output
                if site in writes:
                    new = writes[site](site, t)
                    result = new if isinstance(output, torch.Tensor) else (new, *tuple(output)[1:])
                    t = new
                if site in reads:
                    reads[site](site, t)
                if site in pending:
                    fired(site)
                return result if site in writes else None
            return hook

        def make_in_hook(site: Site) -> Callable[..., Any]:
            def hook(_mod: nn.Module, args: Any) -> Any:
                t = args[0]
                result = None
                if site in writes:
                    t = writes[site](site, t)
                    result = (t, *args[1:])
                if site in reads:
                    reads[site](site, t)
                if site in pending:
                    fired(site)
                return result
            return hook

        try:
            for site in sorted(set(reads) | set(writes)):
                mod = self.module(site)
                if site.tap == "output":
                    handles.append(mod.register_forward_hook(make_out_hook(site)))
                else:
                    handles.append(mod.register_forward_pre_hook(make_in_hook(site)))
            yield
        finally:
            for h in handles:
                h.remove()

    @torch.inference_mode()
    def run_until(
        self,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None,
        reads: Mapping[Site, Reader],
        writes: Mapping[Site, Writer] | None = None,
    ) -> None:
        """Truncated forward: run until every site in `reads`/`writes` has fired, then stop."""
        with self.hooks(reads, writes, stop_when_done=True):
            try:
                self._call(self.prepare(inputs), attention_mask)
            except StopForward:
                return

    @torch.inference_mode()
    def logits(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full forward: the output logits (LM head, classifier, MLM head)."""
        out = self._call(self.prepare(inputs), attention_mask)
        return self._logits(out)

    @torch.inference_mode()
    def run_with_replacement(
        self,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None,
        site: Site,
        replace: Writer,
    ) -> torch.Tensor:
        """Run the rest of the model from `site` with its activation replaced by `replace(site, h)`;
        return the output logits. With `replace` the identity this equals `logits()`."""
        with self.hooks(writes={site: replace}):
            out = self._call(self.prepare(inputs), attention_mask)
        return self._logits(out)

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "n_layers": self.n_layers,
            "activation": self.activation,
            "piecewise_linear": self.piecewise_linear,
            "input_kind": self.input_kind,
            **({"pooling": self.pooling.describe()} if self.pooling is not None else {}),
        }


@dataclass
class LoadedModel:
    """A model ready to audit: eval mode, grads off, with its adapter and provenance."""

    spec: str
    model: nn.Module
    adapter: Adapter
    tokenizer: Any | None = None  # HF tokenizer for text models
    probe: Any | None = None  # a ProbeSet a factory or the zoo supplies as the default probe
    default_probe: str | None = None  # e.g. "text:stdlib", "digits"
    revision: str | None = None
    sha256: str = ""
    max_positions: int | None = None  # context length (text models)
    meta: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return model_id(self.spec)


def model_id(spec: str) -> str:
    """Short readable id of a model spec, for test ids and report folders:
    `gpt2`, `EleutherAI/pythia-70m` -> `pythia-70m`, `./ckpt/` -> `ckpt`,
    `zoo:mlp-digits?dropout=0.4&seed=1` -> `zoo:mlp-digits-dropout0.4-seed1`, `pkg.mod:make` -> `pkg.mod:make`,
    an in-memory model of the Python API `polyaudit.api:my_model` -> `my_model`."""
    s = spec.strip().rstrip("/")
    if s.startswith("polyaudit.api:"):
        return s.partition(":")[2]
    if s.startswith("zoo:") or ("?" in s and ":" in s.partition("?")[0]):  # zoo, factory?pos=...
        return s.replace("?", "-").replace("&", "-").replace("=", "")
    if "/" in s or s.startswith((".", "~")):
        return s.split("/")[-1] or s
    return s
