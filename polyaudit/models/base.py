"""Sites and the Adapter contract: where activations live in a model, and how to read or replace them.

A SITE is one tensor inside one layer: the pre-activation of the MLP nonlinearity (`mlp_pre`; for
gated MLPs the gate input), the MLP output (`mlp_out`), or the residual stream after the layer
(`resid`). Stable names follow TransformerLens' habit: `blocks.3.mlp.pre`, `blocks.3.mlp.out`,
`blocks.3.resid`. Hooks exist only inside the `hooks()` context manager (removed in `finally`).

The forward pass stops as soon as every hooked site has fired (`StopForward`), so nothing past the
deepest site a claim needs is computed (no LM head unless a claim reads outputs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from polyaudit.errors import PolyauditError

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
    and implement `_site(kind, layer) -> Site`, `_call(inputs, attention_mask)` and
    `_logits(output)`.
    """

    family: str = "?"
    input_kind: Literal["tokens", "vectors"] = "tokens"
    activation: str = "?"
    piecewise_linear: bool = False
    n_layers: int = 0
    site_kinds: tuple[SiteKind, ...] = SITE_KINDS

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
        try:
            return self.model.get_submodule(site.module)
        except AttributeError as e:
            raise PolyauditError(
                f"the {self.family} adapter names module {site.module!r}, which this model lacks", site=site.name
            ) from e

    # --- running -----------------------------------------------------------------------------
    def _call(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        raise NotImplementedError

    def _logits(self, output: Any) -> torch.Tensor:
        raise NotImplementedError

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
    `zoo:mlp-digits?dropout=0.4&seed=1` -> `zoo:mlp-digits-dropout0.4-seed1`, `pkg.mod:make` -> `pkg.mod:make`."""
    s = spec.strip().rstrip("/")
    if s.startswith("zoo:") or ("?" in s and ":" in s.partition("?")[0]):  # zoo, factory?pos=...
        return s.replace("?", "-").replace("&", "-").replace("=", "")
    if "/" in s or s.startswith((".", "~")):
        return s.split("/")[-1] or s
    return s
