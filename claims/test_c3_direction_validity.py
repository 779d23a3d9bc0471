"""C3 — directions have validity regions bounded by polytope boundaries.

Black, Sharkey et al. 2022, "Interpreting Neural Networks through the Polytope Lens" (arXiv
2211.12312), prediction 3 (sec. 5, Fig. 3): scaling an activation keeps its direction, yet the
output changes further down, and the change goes with the polytope boundaries crossed downstream.
At one site (the residual stream after the first block; the first hidden layer of an MLP) h is
replaced by c h over a log-spaced grid of scales, and moved along a class-mean direction h + t v.
Effect (version 3): per grid step, boundaries crossed vs JS divergence, against the same divergence
with the codes frozen at the reference point (the network with the grid's boundaries removed): mean
per-input Spearman(crossings, JS) minus Spearman(crossings, frozen-code JS), bootstrap CI and p over
inputs; the own alignment must be positive; validity radii in details. Adjusted across the two rows.
"""

import numpy as np
import pytest

from polyaudit.analyses import c3
from polyaudit.interventions.evaluators import make_downstream
from polyaudit.interventions.lens import (
    downstream_skip,
    labelled_probe,
    site_activations,
    site_for,
)
from polyaudit.verdict import Evidence


def measure(subject, audit, spec, skip) -> dict[str, Evidence]:
    adapter = subject.adapter
    site, name = site_for(adapter, c3.CLAIM)
    skip = skip or downstream_skip(adapter, site, subject.loaded)
    if skip:
        return {k: c3.SPEC.skipped(f"{name}/{k}", skip) for k in c3.ROWS}
    acts, labels, contexts = site_activations(subject, spec, site)
    settings = c3.settings_for(audit.profile.name)
    down = make_downstream(subject.loaded, site, contexts, sample_units=settings.units,
                           seed=int(audit.rng(c3.CLAIM, name, "units").integers(2**62)))
    return c3.direction_validity(
        down, acts, labels, site=name, rng=audit.rng(c3.CLAIM, name),
        settings=settings, n_boot=audit.profile.n_boot,
        ctx=np.arange(len(labels)), notes=f"probe {subject.probe(spec).name}")


@pytest.mark.claim(c3.SPEC, check="direction-validity")
@pytest.mark.parametrize("move", c3.ROWS)
def test_semantic_change_follows_boundaries(subject, move, audit):
    spec, skip = labelled_probe(subject, 2 * c3.MIN_INPUTS)
    evidence = audit.measure(subject, lambda: measure(subject, audit, spec, skip), probe=spec)
    audit.conclude(evidence[move], subject, probe=spec)
