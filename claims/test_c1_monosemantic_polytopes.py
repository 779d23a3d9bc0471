"""C1 — polytopes are more monosemantic than directions.

Black, Sharkey et al. 2022, "Interpreting Neural Networks through the Polytope Lens" (arXiv
2211.12312), prediction 1 (sec. 4): regions named by spline codes group samples of one meaning
better than regions named by directions. At the MLP pre-activation of the first, middle and last
layer the same labelled samples are cut into K clusters by spline code (Hamming geometry), by
direction, by most active neuron and by random hyperplanes (control). Effect per baseline:
H(label | baseline clusters) - H(label | polytope clusters) in bits (jackknifed over the units of
replication), averaged over 4 restarts of every clustering; CI and p from the same paired
replicates over units (words of labelled:categories, images of a CNN's positions, else samples)
and restarts, adjusted across layers x baselines; PASS needs at least 0.1 bits, polytope clusters
that carry label information, a verdict that holds at a second K and no degenerate partition
(reported in the notes). For language models, token identity is scored too (details): on the
labelled samples, and on the text probe sampled as in the paper (evenly spaced tokens per
sequence after a skip).
"""

import dataclasses

import pytest

from polyaudit.analyses import c1
from polyaudit.interventions.lens import (
    DEPTHS,
    capture,
    codes_note,
    depth_layers,
    labelled_probe,
)
from polyaudit.verdict import Evidence


def unit_of(probe):
    """What the probe's groups (the units of replication) are, for the notes."""
    if probe.name == "labelled:categories":
        return "word"
    if probe.kind == "tokens":
        return "sequence"
    return "image" if probe.positions is not None else "sample"


def token_ids(probe):
    return probe.inputs[probe.positions[:, 0], probe.positions[:, 1]].numpy()


def text_token_identity(subject, audit, site, k):
    """Token identity on the run's text probe (paper token sampling), when it is not the labelled one."""
    text = subject.probe(None)
    if text.positions is None or text.labels is not None:
        return None
    data = subject.capture(None).get(site)
    return {"probe": text.name, **c1.token_identity(
        data.samples, token_ids(text), k=k, rng=audit.rng(c1.CLAIM, site.name, "text"),
        n_boot=audit.profile.n_boot, codes=data.codes, groups=data.groups)}


def measure(subject, audit, spec, skip) -> dict[str, Evidence]:
    adapter = subject.adapter
    rows: dict[str, Evidence] = {}
    layers = depth_layers(adapter.n_layers)
    for depth in DEPTHS:
        layer = layers[depth]
        name = "-" if layer is None else adapter.site("mlp_pre", layer).name
        if skip or layer is None:
            reason = skip or f"the model has {adapter.n_layers} layer(s): slot {depth!r} repeats an earlier layer"
            rows.update({f"{depth}/{b}": c1.SPEC.skipped(f"{name}/{b}", reason) for b in c1.BASELINES})
            continue
        site = adapter.site("mlp_pre", layer)
        data = capture(subject, spec).get(site)
        probe = subject.probe(spec)
        tokens = probe.kind == "tokens"
        found = c1.monosemanticity(
            data.samples, data.labels, codes=data.codes, groups=data.groups, unit=unit_of(probe), site=name,
            rng=audit.rng(c1.CLAIM, name), n_boot=audit.profile.n_boot, layer=layer,
            n_perm=audit.profile.n_perm, notes=f"{codes_note(adapter)}; probe {probe.name}",
            extra_labels={"token": token_ids(probe)} if tokens else None)
        k = next((ev.details.get("k") for ev in found.values() if ev.details.get("k")), None)
        text = text_token_identity(subject, audit, site, k) if tokens and k else None
        for b, ev in found.items():
            rows[f"{depth}/{b}"] = (ev if text is None else
                                    dataclasses.replace(ev, details={**ev.details, "token_identity_text": text}))
    return rows


@pytest.mark.claim(c1.SPEC, check="monosemantic")
@pytest.mark.parametrize("baseline", c1.BASELINES)
@pytest.mark.parametrize("depth", DEPTHS)
def test_polytopes_more_monosemantic_than(subject, depth, baseline, audit):
    spec, skip = labelled_probe(subject, c1.MIN_SAMPLES)
    evidence = audit.measure(subject, lambda: measure(subject, audit, spec, skip), probe=spec)
    audit.conclude(evidence[f"{depth}/{baseline}"], subject, probe=spec)
