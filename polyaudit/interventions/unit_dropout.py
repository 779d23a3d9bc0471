"""Inference-time unit dropout: score a model on a probe while a random fraction of one site's units
is zeroed (the measurement side of C5; the statistics are in `polyaudit.analyses.c5`).

Unit dropout at rate q zeroes every element of the site's tensor independently with probability q
(a fresh mask per input and position, as in training-time dropout) and scales the survivors by
1 / (1 - q) ("inverted" dropout, exactly what nn.Dropout does in training), so the expected
activation is unchanged and a model trained with dropout p sees at q = p the perturbation it was
trained on; at q = 1 every element is zeroed. Masks come from a seeded `torch.Generator`.

Perturbations the models were not trained against (C5 family): Gaussian noise added to every unit
(`gaussian_noise`, scaled by the unit's own SD over the probe), the units of highest variance over
the probe set to their mean (`mean_ablation`), and dropout at the model's input (`input_writer`:
the token embeddings of a token model, the input vector otherwise). A unit is a feature of a token
model's site (pooled over real tokens), an element of a vector model's site tensor (a channel at a
position of a CNN); `site_moments` measures their mean and SD.

Which units: the `unit_site_kind` of the model. For plain networks (`nn.Sequential`) it is `resid`,
the output of each nonlinearity, where the zoo's training dropout sits; for transformers it is
`mlp_out`, the MLP block's output, where GPT-2, OPT and BERT apply their training-time
(resid/hidden) dropout.

Scores, per task (`task_for`):
- classify (vector probes with labels, logits over the classes): accuracy and cross-entropy per sample;
- reconstruct (autoencoders: the output has the input's shape): squared error per sample;
- next_token (causal LMs): mean next-token cross-entropy per sequence;
- self_token (encoders such as BERT, no masking): mean cross-entropy of each input token per sequence;
- represent (token models without an output head: sentence encoders, `AutoModel` checkpoints): the
  change of the model's own output representation from the clean run, cosine distance
  (1 - cos) / 2 (`polyaudit.analyses.outputs`): per sequence, of the pooled sentence embedding where
  the checkpoint names its pooling, else the mean over its real tokens of the final hidden state's.
  The clean run scores 0 by construction; its outputs are the reference of every perturbed run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter, LoadedModel, Site, SiteKind, StopForward, Writer
from polyaudit.probes.base import ProbeSet

SCORED_TOKENS = 4096  # the single-checkpoint C5 scores token losses at most at about this many tokens per run
TaskKind = Literal["classify", "reconstruct", "next_token", "self_token", "represent"]
VECTOR_BATCH = 512


def unit_site_kind(adapter: Adapter) -> SiteKind:
    """The site whose units unit dropout removes: `mlp_out` where it exists, else `resid`."""
    return "mlp_out" if "mlp_out" in adapter.site_kinds else "resid"


def unit_dropout(q: float, generator: torch.Generator) -> Writer:
    """A site writer that zeroes each element with probability q and scales the rest by 1/(1-q)."""
    if not 0.0 <= q <= 1.0:
        raise PolyauditError(f"unit dropout rate must be in [0, 1], got {q}")
    return lambda _site, t: _dropout(t, q, generator)


def _dropout(t: torch.Tensor, q: float, generator: torch.Generator) -> torch.Tensor:
    if q == 0.0:
        return t
    if q == 1.0:
        return torch.zeros_like(t)
    keep = torch.rand(t.shape, generator=generator, dtype=torch.float32) >= q
    return t * keep.to(device=t.device, dtype=t.dtype) / (1.0 - q)


def _on(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x.to(device=t.device, dtype=t.dtype)


def gaussian_noise(sd: torch.Tensor, scale: float, generator: torch.Generator) -> Writer:
    """A site writer that adds scale x sd x N(0, 1) to every element (`sd` [unit shape]: each unit's
    SD, broadcast over the batch and, for tokens, the positions)."""

    def write(_site: Site, t: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(t.shape, generator=generator, dtype=torch.float32)
        return t + _on(t, noise) * _on(t, scale * sd)

    return write


def mean_ablation(mask: torch.Tensor, mean: torch.Tensor) -> Writer:
    """A site writer that sets the units in `mask` [unit shape] to their `mean` over the probe."""

    def write(_site: Site, t: torch.Tensor) -> torch.Tensor:
        return torch.where(_on(t, mask).bool(), _on(t, mean).expand_as(t), t)

    return write


def top_variance_mask(sd: torch.Tensor, fraction: float) -> torch.Tensor:
    """bool [unit shape]: the max(1, round(fraction x units)) units of largest SD."""
    flat = sd.reshape(-1)
    k = max(1, round(fraction * flat.numel()))
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    return mask.reshape(sd.shape)


@torch.inference_mode()
def site_moments(loaded: LoadedModel, probe: ProbeSet, site: Site, batch_size: int = 8
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, SD) of each unit of `site` over the probe (float64, CPU): per feature over the real
    tokens of a token probe, per element of an input's tensor otherwise."""
    adapter = loaded.adapter
    total = sq = None
    count = 0.0
    got: list[torch.Tensor] = []

    def read(_site: Site, t: torch.Tensor) -> None:
        got.append(t.detach().double().cpu())

    for lo, hi in _batches(probe, batch_size):
        x = probe.inputs[lo:hi]
        mask = None if probe.attention_mask is None else probe.attention_mask[lo:hi]
        with adapter.hooks(reads={site: read}, stop_when_done=True), contextlib.suppress(StopForward):
            adapter.logits(x, mask)
        t = got.pop()
        if probe.kind == "tokens":
            w = (torch.ones(t.shape[:2]) if mask is None else mask.double().cpu())[..., None]
            s1, s2, c = (w * t).sum((0, 1)), (w * t * t).sum((0, 1)), float(w.sum())
        else:
            s1, s2, c = t.sum(0), (t * t).sum(0), float(t.shape[0])
        total = s1 if total is None else total + s1
        sq = s2 if sq is None else sq + s2
        count += c
    if total is None or sq is None or count < 2:
        raise PolyauditError(f"the probe has too few samples for the spread of {site.name}")
    mean = total / count
    return mean, torch.sqrt(torch.clamp(sq / count - mean * mean, min=0.0))


def input_writer(adapter: Adapter, q: float, generator: torch.Generator
                 ) -> tuple[Site | None, Writer | None, Callable[[torch.Tensor], torch.Tensor] | None]:
    """Dropout at rate q at the model's input: (site, writer) on a token model's input embeddings, or
    a function applied to a vector model's inputs; (None, None, None) for a token model whose
    adapter names no embedding site."""
    if adapter.input_kind == "tokens":
        site = adapter.input_embedding_site()
        return (site, unit_dropout(q, generator), None) if site is not None else (None, None, None)
    unit_dropout(q, generator)  # checks q
    return None, None, lambda x: _dropout(x, q, generator)


@dataclass(frozen=True)
class Task:
    """How a model's output is scored on a probe. `chance` is the score of a model that ignores its
    input: accuracy 1/classes, the loss of predicting the mean image, log(vocabulary)."""

    kind: TaskKind
    higher_is_better: bool  # accuracy: True; losses: False
    chance: float
    n_classes: int = 0

    @property
    def metric(self) -> str:
        return {"classify": "accuracy", "reconstruct": "mse", "next_token": "next-token loss",
                "self_token": "token loss", "represent": "representation change (cosine)"}[self.kind]


@dataclass(frozen=True)
class Scores:
    """Per-group scores of one run over the probe (groups: inputs, or sequences for token probes)."""

    metric: np.ndarray  # [n_groups] accuracy (0/1) or loss per group
    loss: np.ndarray  # [n_groups] loss per group (cross-entropy or squared error)
    outputs: tuple[torch.Tensor, ...] | None = None  # "represent": each batch's outputs (unit rows)

    @property
    def mean_metric(self) -> float:
        return float(self.metric.mean())


def task_for(loaded: LoadedModel, probe: ProbeSet, *, representation: bool = False) -> Task:
    """Decide how to score the model on the probe (one-line PolyauditError when there is no way).
    `representation`: a token model without an output head is scored by the change of its own
    representation ("represent"); otherwise it has no score."""
    adapter = loaded.adapter
    if probe.kind == "tokens" and not adapter.capabilities.output_head:
        if representation:
            return Task("represent", False, float("nan"))
        raise PolyauditError(
            f"cannot score {loaded.spec} on probe {probe.name}: it has no output head (hidden states only), "
            "so it has no loss to compare; load it with its head"
        )
    if probe.kind == "tokens":
        vocab = adapter.vocab_size or 0
        chance = math.log(vocab) if vocab > 1 else float("nan")
        if adapter.capabilities.encoder:
            return Task("self_token", False, chance)
        return Task("next_token", False, chance)
    x = probe.inputs[: min(4, probe.inputs.shape[0])]
    out = adapter.logits(x)
    labelled = out.dim() == 2 and probe.labels is not None
    if labelled and probe.label_names is not None and out.shape[1] == len(probe.label_names):
        return Task("classify", True, 1.0 / out.shape[1], n_classes=int(out.shape[1]))
    if out.shape[1:] == probe.inputs.shape[1:]:  # an autoencoder
        flat = probe.inputs.reshape(probe.inputs.shape[0], -1).double()
        base = float(((flat - flat.mean(0)) ** 2).mean())
        return Task("reconstruct", False, base)
    if labelled and out.shape[1] >= int(probe.labels.max()) + 1:  # type: ignore[union-attr]
        return Task("classify", True, 1.0 / out.shape[1], n_classes=int(out.shape[1]))
    raise PolyauditError(
        f"cannot score {loaded.spec} on probe {probe.name}: its output {tuple(out.shape[1:])} is neither "
        "logits over the probe's labels nor a reconstruction of its inputs"
    )


def _batches(probe: ProbeSet, batch_size: int) -> list[tuple[int, int]]:
    n = int(probe.inputs.shape[0])
    size = VECTOR_BATCH if probe.kind == "vectors" else batch_size
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _token_losses(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, shift: bool,
                  positions: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy per sequence over positions whose target is a real token (the next token
    for a causal model, the token itself for an encoder). `positions` [n]: `logits` [b, n, V] are
    those positions' only, and only they are scored."""
    if positions is None:
        if shift:
            logits, target, keep = logits[:, :-1], ids[:, 1:], mask[:, :-1] * mask[:, 1:]
        else:
            target, keep = ids, mask
    else:
        pos = positions.to(ids.device)
        if shift:
            ok = pos + 1 < ids.shape[1]
            pos, logits = pos[ok], logits[:, ok.to(logits.device)]
            target, keep = ids[:, pos + 1], mask[:, pos] * mask[:, pos + 1]
        else:
            target, keep = ids[:, pos], mask[:, pos]
    # over contiguous rows [b * n, V]: three times faster than over the strided [b, V, n] view
    vocab = logits.shape[-1]
    ce = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), target.reshape(-1),
                                           reduction="none").reshape(target.shape)
    keep = keep.to(ce.dtype)
    return (ce * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def score(
    loaded: LoadedModel,
    probe: ProbeSet,
    task: Task,
    *,
    site: Site | None = None,
    q: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 8,
    writer: Writer | None = None,
    perturb_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
    reference: Scores | None = None,
) -> Scores:
    """Scores over the whole probe, with unit dropout at rate q at `site` (none when site is None),
    or `writer` at `site` instead; `perturb_input` changes the inputs fed to the model (a
    reconstruction is still scored against the clean input). A "represent" task is scored against
    `reference`, the clean run's Scores (whose `outputs` it carries); without one, the run is the
    clean run: it scores 0 and keeps its outputs."""
    adapter = loaded.adapter
    if writer is None and site is not None and q > 0:
        writer = unit_dropout(q, generator or torch.Generator().manual_seed(0))
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    for b, (lo, hi) in enumerate(_batches(probe, batch_size)):
        x = probe.inputs[lo:hi]
        mask = None if probe.attention_mask is None else probe.attention_mask[lo:hi]
        fed = x if perturb_input is None else perturb_input(x)
        if writer is None or site is None:
            out = adapter.logits(fed, mask)
        else:
            out = adapter.run_with_replacement(fed, mask, site, writer)
        ref = None if reference is None or reference.outputs is None else reference.outputs[b]
        parts.append(_score_batch(adapter, probe, task, out, lo, hi, ref))
    return _scores(task, parts, keep=reference is None)


def scored_positions(probe: ProbeSet, budget: int = SCORED_TOKENS) -> np.ndarray | None:
    """The positions a token probe's losses are scored at in the single-checkpoint C5: every
    `stride`-th position (0, stride, 2 stride, ...) with the smallest stride that keeps the
    scored real tokens within `budget`; None (every position) when the probe fits the budget."""
    if probe.kind != "tokens" or probe.inputs.dim() != 2:
        return None
    length = int(probe.inputs.shape[1])
    real = int(probe.attention_mask.sum()) if probe.attention_mask is not None else int(probe.inputs.numel())
    stride = max(1, math.ceil(real / max(budget, 1)))
    return None if stride == 1 else np.arange(0, length, stride)


def score_layers(
    loaded: LoadedModel,
    probe: ProbeSet,
    task: Task,
    sites: Sequence[Site],
    q: float,
    generators: Sequence[torch.Generator],
    *,
    batch_size: int = 8,
    positions: np.ndarray | None = None,
    enough: Callable[[np.ndarray], bool] | None = None,
) -> tuple[Scores, list[Scores]]:
    """(clean Scores, Scores with unit dropout at rate q at each of `sites`, one generator each):
    the same numbers as `score` run once clean and once per site, computed batch by batch so that
    each perturbed run starts AFTER the blocks before its site. The clean run of a batch records
    every block's output (`record_blocks`); the run perturbed at a site in block i replays blocks
    0 .. i - 1 from that record (`resume_after`) instead of computing them again, so the cost of a
    layer's run is the part of the model after its site, plus the head. Adapters that name no
    blocks (`Adapter.block_modules`) run every layer whole. Masks are drawn from each site's own
    generator in batch order, as `score` draws them.

    `positions` (token probes; `scored_positions`): score the token losses at these positions only,
    the output head fed only their hidden states (a forward pre-hook on `Adapter.output_head`), the
    same positions in the clean and every perturbed run. None: every position, as `score`.

    `enough`: called after each batch with the loss increases measured so far [sites, groups
    run] (each site's loss minus the clean loss, per group: sequence or input, in probe order);
    when it says True no further batch runs, and the Scores hold the groups run."""
    adapter = loaded.adapter
    blocks = adapter.block_modules()
    head = adapter.output_head() if task.kind in ("next_token", "self_token") else None
    at = None if positions is None or head is None else torch.as_tensor(np.asarray(positions, dtype=np.int64))
    clean: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    perturbed: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]] = [[] for _ in sites]
    writers = [unit_dropout(q, g) for g in generators]
    for lo, hi in _batches(probe, batch_size):
        x = probe.inputs[lo:hi]
        mask = None if probe.attention_mask is None else probe.attention_mask[lo:hi]
        with record_blocks(blocks) as recorded, head_at(head, at):
            out = adapter.logits(x, mask)
        part = _score_batch(adapter, probe, task, out, lo, hi, None, at)
        clean.append(part)
        for j, site in enumerate(sites):
            with resume_after(blocks, site.layer, recorded), head_at(head, at):
                out = adapter.run_with_replacement(x, mask, site, writers[j])
            perturbed[j].append(_score_batch(adapter, probe, task, out, lo, hi, part[2], at))
        if enough is not None:
            base = torch.cat([c[1] for c in clean])
            if enough(np.stack([(torch.cat([p[1] for p in runs]) - base).numpy() for runs in perturbed])):
                break
    return _scores(task, clean, keep=True), [_scores(task, p, keep=False) for p in perturbed]


@contextlib.contextmanager
def head_at(head: nn.Module | None, positions: torch.Tensor | None) -> Iterator[None]:
    """Inside, the output head sees only `positions` of its input [b, length, d] (None: no change)."""
    if head is None or positions is None:
        yield
        return

    def select(_mod: nn.Module, args: Any) -> Any:
        h = args[0]
        return (h[:, positions.to(h.device)], *args[1:]) if h.dim() == 3 else args

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def _score_batch(adapter: Adapter, probe: ProbeSet, task: Task, out: torch.Tensor, lo: int, hi: int,
                 ref: torch.Tensor | None, positions: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(metric, loss, representation or None) of one batch's output `out` on probe rows lo:hi;
    a "represent" task is scored against `ref` (None: this is the clean run, which scores 0);
    token losses at `positions` only when given (`out` then holds those positions' logits)."""
    x = probe.inputs[lo:hi]
    mask = None if probe.attention_mask is None else probe.attention_mask[lo:hi]
    out = out.detach().cpu()
    if task.kind == "represent":
        m = torch.ones(x.shape[:2]) if mask is None else mask.cpu()
        rep = _representation(adapter, out, m)
        if ref is None:
            zero = torch.zeros(rep.shape[0], dtype=torch.float64)
            return zero, zero, rep
        change = _cosine_change(rep, ref, None if adapter.pooling is not None else m)
        return change, change, None
    if task.kind == "classify":
        y = torch.from_numpy(np.asarray(probe.input_labels[lo:hi], dtype=np.int64))  # type: ignore[index]
        return ((out.argmax(-1) == y).double(),
                torch.nn.functional.cross_entropy(out.float(), y, reduction="none").double(), None)
    if task.kind == "reconstruct":
        err = ((out.double() - x.double()) ** 2).reshape(out.shape[0], -1).mean(1)
        return err, err, None
    m = torch.ones_like(x) if mask is None else mask.to(x.device)
    if positions is not None and out.shape[1] == x.shape[1] != len(positions):  # a head that ignored them
        out = out[:, positions]
    ce = _token_losses(out, x, m, shift=task.kind == "next_token", positions=positions).double()
    return ce, ce, None


def _scores(task: Task, parts: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], *,
            keep: bool) -> Scores:
    outputs = None
    if task.kind == "represent" and keep:
        outputs = tuple(p[2] for p in parts if p[2] is not None)
    return Scores(metric=torch.cat([p[0] for p in parts]).numpy(), loss=torch.cat([p[1] for p in parts]).numpy(),
                  outputs=outputs)


@contextlib.contextmanager
def record_blocks(blocks: Sequence[nn.Module] | None) -> Iterator[list[Any]]:
    """Record what every block returns during the forward passes inside (a list, block order)."""
    recorded: list[Any] = []
    if not blocks:
        yield recorded
        return
    slots: list[Any] = [None] * len(blocks)

    def hook(i: int) -> Callable[..., None]:
        def keep(_mod: nn.Module, _args: Any, output: Any) -> None:
            slots[i] = output
        return keep

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    try:
        yield recorded
    finally:
        for h in handles:
            h.remove()
        recorded[:] = slots


@contextlib.contextmanager
def resume_after(blocks: Sequence[nn.Module] | None, layer: int, recorded: Sequence[Any]) -> Iterator[None]:
    """Inside, blocks 0 .. layer - 1 return what they returned in the recorded run instead of
    computing it (their forward is replaced; hooks on them still fire). The embeddings, masks and
    everything from block `layer` on run as usual, so a run on the recorded inputs gives the same
    numbers as a whole run."""
    if not blocks or layer <= 0 or len(recorded) < layer:
        yield
        return
    saved: list[tuple[nn.Module, Any]] = []

    def replay(output: Any) -> Callable[..., Any]:
        return lambda *_args, **_kwargs: output

    try:
        for i in range(layer):
            block = blocks[i]
            saved.append((block, block.__dict__.get("forward")))
            block.forward = replay(recorded[i])
        yield
    finally:
        for block, old in saved:
            if old is None:
                del block.forward
            else:
                block.forward = old


def _representation(adapter: Adapter, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A headless model's output as compared: its pooled sentence embedding [b, D] where it names a
    pooling, else its final hidden states [b, L, d]; unit rows, float32."""
    rep = adapter.pooling.pool(hidden.float(), mask) if adapter.pooling is not None else hidden.float()
    return rep / rep.norm(dim=-1, keepdim=True).clamp(min=1e-30)


def _cosine_change(rep: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per sequence: (1 - cos) / 2 between unit rows (pooled), or its mean over real tokens."""
    change = (0.5 * (1.0 - (rep * ref).sum(-1))).clamp(0.0, 1.0).double()
    if mask is None:
        return change
    w = mask.double()
    return (change * w).sum(1) / w.sum(1).clamp(min=1.0)


def per_sample(values: np.ndarray, probe: ProbeSet) -> np.ndarray:
    """Per-input values spread to the probe's kept samples (token probes: each sample gets its
    sequence's value; a CNN's positions: their image's), so they pair with the samples'
    activations under the same resamples. `values` may cover only the first inputs (a run that
    stopped early): the samples of the inputs not run are left out."""
    if probe.positions is None:
        return values
    source = np.asarray(probe.positions[:, 0], dtype=np.int64)  # the input of each sample (not `groups`:
    return values[source[source < len(values)]]  # a labelled probe's groups are its words)


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A torch.Generator seeded from a numpy Generator (for dropout masks)."""
    return torch.Generator().manual_seed(int(rng.integers(2**62)))
