"""Sites of convolutional networks: per-position channel vectors of every nonlinearity, as in the paper.

Black, Sharkey et al. 2022 study InceptionV1 through "the vectors of all channel dimensions at a
single fixed spatial position, one [n_channels] example per image". `ConvAdapter` makes that the
sample of every site of a CNN (an `nn.Sequential` stack or any module, e.g. a torchvision ResNet):

- a LAYER is one CALL of a nonlinearity module, in execution order (found by tracing one forward
  on example inputs), so a module called twice per block (torchvision's shared, in-place `relu`) is
  two layers; its site module is written `path#k` for the k-th call (k > 0);
- `mlp_pre` is the nonlinearity's input (the pre-activation feature map, whose signs are the
  spline code), `resid` its output; there is no `mlp_out`;
- the position SELECTOR (`pos=`) says which channel vectors of a feature map [C, H, W] are samples:
  `center` the vector at (H // 2, W // 2) of every map; `i,j` the vector at row i, column j of
  the finest site map, and at the same relative location of coarser maps; `all` every position of
  the coarsest site map as a separate sample (finer maps read at the same relative locations, so
  samples pair across layers: one [C] vector per image and position). Dense layers (after Flatten)
  have one vector per image, which every position shares.

Selection applies to what `run_until` hands its readers (activation capture, stimulus
trajectories): [B, C] for one position, [B, G, C] for G positions. `hooks()` and
`run_with_replacement` see whole feature maps, so perturbations (C2, C3, unit dropout) act on every
unit and downstream codes count every unit of the map. In-place ReLUs are read before they
overwrite their input; eval-mode BatchNorm is an affine map like any other layer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import (
    PIECEWISE_LINEAR,
    Adapter,
    Capabilities,
    Reader,
    Site,
    SiteKind,
    StopForward,
    Writer,
)
from polyaudit.models.sequential import _act_name

POS_HELP = "pos=center, pos=all or pos=I,J (a row and column of the finest feature map)"
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def parse_pos(text: str) -> str | tuple[int, int]:
    """`center`, `all`, or (i, j) from `i,j` / `(i,j)`; one-line PolyauditError otherwise."""
    s = str(text).strip().lower().replace(" ", "")
    if s in ("center", "centre", "all"):
        return "center" if s.startswith("cent") else "all"
    parts = s.strip("()").split(",")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    raise PolyauditError(f"bad position selector pos={text!r}: use {POS_HELP}")


def pos_text(pos: str | tuple[int, int]) -> str:
    return pos if isinstance(pos, str) else f"{pos[0]},{pos[1]}"


def is_convolutional(model: nn.Module) -> bool:
    """Whether the module has a convolution and a nonlinearity module polyaudit knows."""
    mods = list(model.modules())
    return any(isinstance(m, CONV_TYPES) for m in mods) and any(_act_name(m) for m in mods)


def trace_calls(model: nn.Module, example: torch.Tensor) -> list[tuple[str, int, tuple[int, ...], bool]]:
    """(module path, call index, input shape without batch, in place) of every call of a
    nonlinearity module during one forward of `example`, in execution order."""
    calls: list[tuple[str, int, tuple[int, ...], bool]] = []
    counts: dict[str, int] = {}
    handles = []

    def make(path: str, mod: nn.Module) -> Callable[..., None]:
        def hook(_m: nn.Module, args: Any) -> None:
            k = counts.get(path, 0)
            counts[path] = k + 1
            calls.append((path, k, tuple(args[0].shape[1:]), bool(getattr(mod, "inplace", False))))
        return hook

    for path, mod in model.named_modules():
        if path and _act_name(mod):
            handles.append(mod.register_forward_pre_hook(make(path, mod)))
    try:
        with torch.inference_mode():
            model(example)
    except Exception as e:  # a user model that cannot run its own example: say so in one line
        raise PolyauditError(
            f"tracing {type(model).__name__} on example inputs of shape {tuple(example.shape)} failed "
            f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from e
    finally:
        for h in handles:
            h.remove()
    return calls


class ConvAdapter(Adapter):
    """Adapter for convolutional networks; see the module docstring."""

    family = "conv"
    input_kind = "vectors"
    site_kinds: tuple[SiteKind, ...] = ("mlp_pre", "resid")

    def __init__(self, model: nn.Module, example: torch.Tensor, pos: str | tuple[int, int] = "center") -> None:
        super().__init__(model)
        self.pos = parse_pos(pos) if isinstance(pos, str) else pos
        calls = trace_calls(model, self.prepare(example[: min(2, example.shape[0])]))
        if not calls:
            raise PolyauditError(
                f"{type(model).__name__} calls no nonlinearity module (ReLU, GELU, ...) in its forward: "
                "polyaudit's sites are the inputs and outputs of its nonlinearity modules")
        self.calls = calls
        self.paths = [p if k == 0 else f"{p}#{k}" for p, k, _, _ in calls]
        self.shapes = [shape for _, _, shape, _ in calls]
        self.inplace = [inplace for _, _, _, inplace in calls]
        self.n_layers = len(calls)
        names = [_act_name(model.get_submodule(p)) or "?" for p, _, _, _ in calls]
        self.activation = names[0] if len(set(names)) == 1 else "mixed(" + ",".join(dict.fromkeys(names)) + ")"
        self.piecewise_linear = all(n in PIECEWISE_LINEAR for n in names)
        self.grid = self._grid()
        self.positions_per_input = max(len(g) for g in self.grid) if self.grid else 1
        self._index: dict[tuple[int, str], torch.Tensor] = {}
        self.capabilities = Capabilities(output_head=True, feature_maps=True, spatial_positions=True,
                                         exact_walk=self.piecewise_linear)

    @property
    def position_selector(self) -> str:
        return pos_text(self.pos)

    # --- positions -------------------------------------------------------------------------
    def _spatial(self) -> list[int]:
        return [i for i, s in enumerate(self.shapes) if len(s) == 3]

    def _grid(self) -> list[list[int]]:
        """Per layer, the flat (h * W + w) indices of the selected positions of its map ([0] for
        dense layers, repeated to the grid size)."""
        spatial = self._spatial()
        if not spatial:
            raise PolyauditError(
                "the model's nonlinearities act on no [C, H, W] feature map: not a convolutional network "
                "(use it as an nn.Sequential MLP)")
        sizes = [(self.shapes[i][1], self.shapes[i][2]) for i in spatial]
        if self.pos == "all":
            ref = min(sizes, key=lambda hw: hw[0] * hw[1])
            cells = [(i, j) for i in range(ref[0]) for j in range(ref[1])]
        elif self.pos == "center":
            ref = (1, 1)
            cells = [(0, 0)]
        else:
            assert isinstance(self.pos, tuple)
            ref = max(sizes, key=lambda hw: hw[0] * hw[1])
            i, j = self.pos
            if not (0 <= i < ref[0] and 0 <= j < ref[1]):
                raise PolyauditError(
                    f"pos={i},{j} lies outside the finest feature map ({ref[0]}x{ref[1]}): use {POS_HELP}")
            cells = [(i, j)]
        out: list[list[int]] = []
        for shape in self.shapes:
            if len(shape) != 3:
                out.append([0] * len(cells))
                continue
            h, w = shape[1], shape[2]
            if self.pos == "center":
                out.append([(h // 2) * w + w // 2])
                continue
            out.append([min(h - 1, math.floor((ci + 0.5) * h / ref[0])) * w
                        + min(w - 1, math.floor((cj + 0.5) * w / ref[1])) for ci, cj in cells])
        return out

    def select(self, site: Site, t: torch.Tensor) -> torch.Tensor:
        """The selected channel vectors of a site's tensor: [B, C] (one position) or [B, G, C]."""
        b = t.shape[0]
        g = self.positions_per_input
        if t.dim() == 4:
            key = (site.layer, str(t.device))
            idx = self._index.get(key)
            if idx is None:
                idx = self._index[key] = torch.tensor(self.grid[site.layer], dtype=torch.long, device=t.device)
            picked = t.flatten(2).index_select(2, idx).transpose(1, 2)  # [B, G, C]
            return picked[:, 0] if g == 1 else picked
        flat = t.reshape(b, -1)
        return flat if g == 1 else flat[:, None, :].expand(b, g, flat.shape[1])

    # --- sites -----------------------------------------------------------------------------
    def _site(self, kind: SiteKind, layer: int) -> Site:
        return Site(layer=layer, kind=kind, module=self.paths[layer], tap="input" if kind == "mlp_pre" else "output")

    def rank_bound(self, site: Site) -> int | None:
        return None

    @contextlib.contextmanager
    def hooks(
        self,
        reads: Mapping[Site, Reader] | None = None,
        writes: Mapping[Site, Writer] | None = None,
        stop_when_done: bool = False,
    ) -> Iterator[None]:
        """As `Adapter.hooks`, on whole feature maps, with each site bound to one CALL of its module."""
        reads = dict(reads or {})
        writes = dict(writes or {})
        pending: set[Site] = set(reads) | set(writes)
        counts: dict[str, int] = {}
        by_path: dict[str, list[tuple[int, Site]]] = {}
        for site in sorted(pending):
            by_path.setdefault(site.path, []).append((site.call, site))

        def fired(site: Site) -> None:
            pending.discard(site)
            if stop_when_done and not pending:
                raise StopForward

        def act(site: Site, t: torch.Tensor) -> torch.Tensor | None:
            new = None
            if site in writes:
                new = t = writes[site](site, t)
            if site in reads:
                reads[site](site, t)
            if site in pending:
                fired(site)
            return new

        def make_pre(path: str) -> Callable[..., Any]:
            here = [(k, s) for k, s in by_path[path] if s.tap == "input"]
            inplace = bool(getattr(self.model.get_submodule(path), "inplace", False))

            def hook(_mod: nn.Module, args: Any) -> Any:
                k_now = counts.get(path, 0)
                t = args[0]
                replaced = None
                for k, s in here:
                    if k == k_now:
                        # an in-place module overwrites its input: readers get a copy
                        new = act(s, t.clone() if inplace and s in reads and s not in writes else t)
                        if new is not None:
                            t = replaced = new
                return None if replaced is None else (replaced, *args[1:])
            return hook

        def make_post(path: str) -> Callable[..., Any]:
            here = [(k, s) for k, s in by_path[path] if s.tap == "output"]

            def hook(_mod: nn.Module, _args: Any, output: Any) -> Any:
                k_now = counts.get(path, 0)
                counts[path] = k_now + 1
                t = output
                replaced = None
                for k, s in here:
                    if k == k_now:
                        new = act(s, t)
                        if new is not None:
                            t = replaced = new
                return replaced
            return hook

        handles = [self.model.register_forward_pre_hook(lambda _m, _a: counts.clear())]
        try:
            for path in by_path:
                mod = self.model.get_submodule(path)
                handles.append(mod.register_forward_pre_hook(make_pre(path)))
                handles.append(mod.register_forward_hook(make_post(path)))
            yield
        finally:
            for h in handles:
                h.remove()

    # --- running ---------------------------------------------------------------------------
    def run_until(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None,
                  reads: Mapping[Site, Reader], writes: Mapping[Site, Writer] | None = None) -> None:
        """Truncated forward whose readers get the selected channel vectors (see `select`)."""
        def selecting(reader: Reader) -> Reader:
            return lambda site, t: reader(site, self.select(site, t))

        super().run_until(inputs, attention_mask, {s: selecting(r) for s, r in reads.items()}, writes)

    @torch.inference_mode()
    def feature_maps(self, inputs: torch.Tensor, site: Site, batch_size: int = 256) -> np.ndarray:
        """float64 [n, C * H * W]: the site's whole activation for each input (not position-selected)."""
        got: list[torch.Tensor] = []

        def read(_site: Site, t: torch.Tensor) -> None:
            got.append(t.reshape(t.shape[0], -1).double().cpu().clone())

        for lo in range(0, inputs.shape[0], batch_size):
            with self.hooks(reads={site: read}, stop_when_done=True), contextlib.suppress(StopForward):
                self._call(self.prepare(inputs[lo:lo + batch_size]), None)
        return torch.cat(got).numpy()

    def _call(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        return self.model(inputs)

    def _logits(self, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise PolyauditError(f"the model returned a {type(output).__name__}, not a tensor of logits")
        return output

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pos": pos_text(self.pos), "positions_per_input": self.positions_per_input}
