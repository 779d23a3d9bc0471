"""What the Polytope Lens claims (C1-C3) read from a model under audit: a labelled probe, the
layers of the depth slots, the site a path or a scaling perturbs, and how exact the codes are.

- Labelled probe: language models use `labelled:categories` (every kept token has a semantic
  category); vector models use their own / the default probe (`digits` for the zoo, a factory's
  `(inputs, labels)`). No labels: the claims are SKIPPED with the reason.
- Depth slots `first`, `middle`, `last` name layers 0, (L - 1) // 2 and L - 1, so test ids are known
  before the model loads and stay few; a slot that repeats an earlier layer (models with fewer
  than three layers) is skipped.
- Perturbed site (C2, C3): the residual stream after block 0 for transformers (downstream: the MLP
  pre-activations of every later block); for `nn.Sequential` models C2 interpolates the network
  INPUT (downstream: every layer) and C3 scales the first hidden layer's output. Convolutional
  models (`polyaudit.models.conv`) are perturbed on whole feature maps (pixels for C2's input rows;
  C2 also interpolates a middle layer, `hidden_site`), with one context and one label per image.
- One capture serves all three claims: each asks for the union of their site kinds before reading.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polyaudit.errors import PolyauditError

DEPTHS: tuple[str, ...] = ("first", "middle", "last")
KINDS: tuple[str, ...] = ("mlp_pre", "resid")  # every site kind C1-C3 read, captured in one pass
TEXT_PROBE = "labelled:categories"


def probe_spec(subject: Any) -> str | None:
    """The probe key C1-C3 read: `labelled:categories` for token models, else the model's own."""
    return TEXT_PROBE if subject.adapter.input_kind == "tokens" else None


def labelled_probe(subject: Any, min_samples: int) -> tuple[str | None, str | None]:
    """(probe spec, skip reason or None). Asks for the claims' site kinds on that probe first."""
    spec = probe_spec(subject)
    subject.request(KINDS, spec, min_samples)
    try:
        probe = subject.probe(spec)
    except PolyauditError as e:
        return spec, f"no labelled probe applies to this model ({e})"
    if probe.labels is None:
        return spec, (f"probe {probe.name} has no labels: the Polytope Lens claims compare regions with "
                      "labels; use a labelled probe (--probe=digits, or a factory returning (inputs, labels))")
    return spec, None


def capture(subject: Any, spec: str | None) -> Any:
    """The shared capture of the labelled probe, with every C1-C3 site kind requested."""
    cap = subject.capture(spec)
    cap.request([k for k in KINDS if k in subject.adapter.site_kinds])
    return cap


def depth_layers(n_layers: int) -> dict[str, int | None]:
    """Slot -> layer index; None for a slot that names a layer an earlier slot already has."""
    raw = {"first": 0, "middle": (n_layers - 1) // 2, "last": n_layers - 1}
    out: dict[str, int | None] = {}
    seen: set[int] = set()
    for slot in DEPTHS:
        layer = raw[slot]
        out[slot] = None if layer in seen or n_layers < 1 else layer
        seen.add(layer)
    return out


def codes_note(adapter: Any) -> str:
    """Whether spline codes at `mlp_pre` are exact (ReLU-like) or a proxy (smooth activations)."""
    act = adapter.activation
    if adapter.piecewise_linear:
        return f"spline codes exact ({act})"
    gate = " gate" if adapter.capabilities.gated_mlp else ""
    return f"spline codes approximate: {act} (sign of the{gate} pre-activation)"


def site_for(adapter: Any, claim: str) -> tuple[Any, str]:
    """(Site or None for the input, display name) of the site C2 / C3 perturb."""
    if adapter.input_kind == "vectors" and claim == "C2":
        return None, "input"
    site = adapter.site("resid", 0)
    return site, site.name


def hidden_site(adapter: Any) -> Any:
    """The intermediate layer C2 also interpolates on a convolutional network (the paper's image
    setting: paths between images in pixels AND in a hidden layer): the output of the middle
    nonlinearity (before the last, so boundaries lie downstream). None for other models."""
    if not adapter.capabilities.feature_maps or adapter.n_layers < 2:
        return None
    return adapter.site("resid", min((adapter.n_layers - 1) // 2, adapter.n_layers - 2))


def downstream_skip(adapter: Any, site: Any, loaded: Any) -> str | None:
    """Why paths from `site` cannot be measured on this model (None when they can). A headless
    token model is measured on its own representation (`polyaudit.interventions.downstream.output_space`)."""
    from polyaudit.interventions.downstream import later_sites, output_space

    if output_space(adapter) is None:
        return ("the model has no output head and its output is not a token representation: semantic change "
                "needs an output to compare; load it with its head")
    if not later_sites(adapter, site):
        return f"no MLP layer after {site.name if site is not None else 'the input'}: no boundaries downstream"
    return None


def site_activations(subject: Any, spec: str | None, site: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """(activations [n, d], labels [n], Contexts) of every probe sample at `site` (None: inputs);
    context i is sample i's own input (its sequence, with its kept position, for tokens)."""
    from polyaudit.interventions.downstream import Contexts

    probe = subject.probe(spec)
    if probe.labels is None:
        raise PolyauditError(f"probe {probe.name} has no labels")
    if probe.kind == "tokens" and probe.positions is not None:
        seq = np.asarray(probe.positions[:, 0], dtype=np.int64)
        contexts = Contexts(inputs=probe.inputs[seq],
                            mask=None if probe.attention_mask is None else probe.attention_mask[seq],
                            pos=np.asarray(probe.positions[:, 1], dtype=np.int64))
    else:  # vectors: one context per input (a CNN read at several positions still has one image)
        contexts = Contexts(inputs=probe.inputs)
    labels = np.asarray(probe.input_labels if probe.kind == "vectors" else probe.labels)
    if site is None:
        acts = probe.inputs.detach().cpu().double().numpy().reshape(probe.inputs.shape[0], -1)
        bad = int(acts.size - np.count_nonzero(np.isfinite(acts)))
        if bad:
            raise PolyauditError(f"the inputs of probe {probe.name} contain {bad} NaN/inf values")
    elif subject.adapter.capabilities.feature_maps:  # a CNN is perturbed on its whole feature map
        acts = subject.adapter.feature_maps(probe.inputs, site)
    else:
        acts = np.asarray(capture(subject, spec).get(site).samples, dtype=np.float64)
    # boundaries are counted at every later pre-activation: NaN/inf there would count as "off"
    from polyaudit.interventions.downstream import later_sites

    for s in ([site] if site is not None else []) + later_sites(subject.adapter, site):
        data = capture(subject, spec).get(s)
        if data.n_nonfinite:
            raise PolyauditError(f"activations at {s.name} contain {data.n_nonfinite} NaN/inf values")
    return acts, labels, contexts
