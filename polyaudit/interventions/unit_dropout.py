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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter, LoadedModel, Site, SiteKind, StopForward, Writer
from polyaudit.probes.base import ProbeSet

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


def _token_losses(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, shift: bool) -> torch.Tensor:
    """Mean cross-entropy per sequence over positions whose target is a real token."""
    logits = logits.float()
    if shift:
        logits, ids, keep = logits[:, :-1], ids[:, 1:], (mask[:, :-1] * mask[:, 1:])
    else:
        keep = mask
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
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
    metric: list[torch.Tensor] = []
    loss: list[torch.Tensor] = []
    kept: list[torch.Tensor] = []
    for b, (lo, hi) in enumerate(_batches(probe, batch_size)):
        x = probe.inputs[lo:hi]
        mask = None if probe.attention_mask is None else probe.attention_mask[lo:hi]
        fed = x if perturb_input is None else perturb_input(x)
        if writer is None or site is None:
            out = adapter.logits(fed, mask)
        else:
            out = adapter.run_with_replacement(fed, mask, site, writer)
        out = out.detach().cpu()
        if task.kind == "represent":
            m = torch.ones(x.shape[:2]) if mask is None else mask.cpu()
            rep = _representation(adapter, out, m)
            if reference is None or reference.outputs is None:
                kept.append(rep)
                change = torch.zeros(rep.shape[0], dtype=torch.float64)
            else:
                change = _cosine_change(rep, reference.outputs[b], None if adapter.pooling is not None else m)
            metric.append(change)
            loss.append(change)
        elif task.kind == "classify":
            y = torch.from_numpy(np.asarray(probe.input_labels[lo:hi], dtype=np.int64))  # type: ignore[index]
            metric.append((out.argmax(-1) == y).double())
            loss.append(torch.nn.functional.cross_entropy(out.float(), y, reduction="none").double())
        elif task.kind == "reconstruct":
            err = ((out.double() - x.double()) ** 2).reshape(out.shape[0], -1).mean(1)
            metric.append(err)
            loss.append(err)
        else:
            m = torch.ones_like(x) if mask is None else mask.to(x.device)
            ce = _token_losses(out, x, m, shift=task.kind == "next_token").double()
            metric.append(ce)
            loss.append(ce)
    return Scores(metric=torch.cat(metric).numpy(), loss=torch.cat(loss).numpy(),
                  outputs=tuple(kept) if task.kind == "represent" and reference is None else None)


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
    """Per-group values spread to the probe's kept samples (token probes: each sample gets its
    sequence's value), so they pair with the samples' activations under the same resamples."""
    if probe.positions is None:
        return values
    return values[probe.groups]  # tokens: their sequence's value; a CNN's positions: their image's


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A torch.Generator seeded from a numpy Generator (for dropout masks)."""
    return torch.Generator().manual_seed(int(rng.integers(2**62)))
