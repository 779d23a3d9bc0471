"""Sites of a plain `nn.Sequential` network (MLPs, small CNNs): one layer per nonlinearity.

A layer's `mlp_pre` is the INPUT of its nonlinearity (the pre-activation, whose signs are the
spline code), and `resid` its OUTPUT (the hidden representation the next layer reads). Plain
networks have no separate MLP output, so `mlp_out` does not exist. Dropout is the identity in eval
mode. With only ReLU-like nonlinearities the network is piecewise linear (Black, Sharkey et al.
2022, section 2: each spline code names one polytope on which the network is affine).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import PIECEWISE_LINEAR, Adapter, Capabilities, Site, SiteKind

NONLINEARITIES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.ReLU6: "relu6",
    nn.PReLU: "prelu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.CELU: "celu",
    nn.Softplus: "softplus",
    nn.Mish: "mish",
    nn.Hardtanh: "hardtanh",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
}


def _act_name(module: nn.Module) -> str | None:
    for cls, name in NONLINEARITIES.items():
        if type(module) is cls:
            return name
    return None


def leaves(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Non-Sequential modules of a (nested) nn.Sequential in execution order, with their paths."""
    return [(n, m) for n, m in net.named_modules() if n and not isinstance(m, nn.Sequential)]


def after_site(net: nn.Sequential, site: Site | None) -> nn.Sequential:
    """The modules that run after `site` (None: the whole net) as a flat nn.Sequential."""
    mods = leaves(net)
    if site is None:
        return nn.Sequential(*[m for _, m in mods])
    names = [n for n, _ in mods]
    if site.module not in names:
        raise PolyauditError(f"site module {site.module!r} is not a leaf of the nn.Sequential", site=site.name)
    i = names.index(site.module)
    start = i + 1 if site.tap == "output" else i
    return nn.Sequential(*[m for _, m in mods[start:]])


class SequentialAdapter(Adapter):
    """Adapter for `nn.Sequential` (nested Sequentials included), layers in execution order."""

    family = "sequential"
    input_kind = "vectors"
    site_kinds: tuple[SiteKind, ...] = ("mlp_pre", "resid")

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Sequential):
            raise PolyauditError(
                f"the sequential adapter needs an nn.Sequential, got {type(model).__name__}"
            )
        super().__init__(model)
        named = [(n, m) for n, m in model.named_modules(remove_duplicate=False) if _act_name(m)]
        if len({id(m) for _, m in named}) != len(named):
            raise PolyauditError(
                "the nn.Sequential reuses one activation module in several places: give each "
                "layer its own nonlinearity module so its sites are distinct"
            )
        if not named:
            raise PolyauditError(
                "the nn.Sequential has no nonlinearity module (ReLU, GELU, Tanh, ...): "
                "polyaudit's sites are the inputs and outputs of its nonlinearities"
            )
        for path, _ in named:
            parent = model.get_submodule(path.rpartition(".")[0]) if "." in path else model
            if not isinstance(parent, nn.Sequential):
                raise PolyauditError(
                    f"nonlinearity {path!r} sits inside a {type(parent).__name__}, not a Sequential: "
                    "flatten it into nn.Sequential, or return your own Adapter from the factory "
                    "(see polyaudit.models.factory; test it with polyaudit.models.check.check_adapter)"
                )
        self.paths = [n for n, _ in named]
        names = [_act_name(m) or "?" for _, m in named]
        self.n_layers = len(named)
        self.activation = (
            names[0] if len(set(names)) == 1 else "mixed(" + ",".join(dict.fromkeys(names)) + ")"
        )
        self.piecewise_linear = all(n in PIECEWISE_LINEAR for n in names)
        self.capabilities = Capabilities(output_head=True, exact_walk=self.piecewise_linear)

    def modules_after(self, site: Site | None) -> nn.Sequential:
        return after_site(self.model, site)  # type: ignore[arg-type]

    def rank_bound(self, site: Site) -> int | None:
        """mlp_pre of a nonlinearity fed directly by an nn.Linear has rank at most its in_features."""
        if site.kind != "mlp_pre":
            return None
        parent_path, _, name = site.module.rpartition(".")
        parent = self.model.get_submodule(parent_path) if parent_path else self.model
        keys = list(parent._modules)
        i = keys.index(name)
        before = parent._modules[keys[i - 1]] if i > 0 else None
        return int(before.in_features) if isinstance(before, nn.Linear) else None

    def _site(self, kind: SiteKind, layer: int) -> Site:
        if kind == "mlp_pre":
            return Site(layer=layer, kind=kind, module=self.paths[layer], tap="input")
        return Site(layer=layer, kind=kind, module=self.paths[layer], tap="output")

    def _call(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        return self.model(inputs)

    def _logits(self, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise PolyauditError(
                f"the nn.Sequential returned a {type(output).__name__}, not a tensor of logits"
            )
        return output
