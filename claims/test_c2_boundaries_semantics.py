"""C2 — polytope boundaries track semantic boundaries.

Black, Sharkey et al. 2022, "Interpreting Neural Networks through the Polytope Lens" (arXiv
2211.12312), prediction 2 (sec. 5): along a path between two inputs, the network's output changes
where the path crosses many polytope boundaries. The activation at a site (the input of an MLP, the
residual stream of a transformer) is interpolated between pairs of samples with different labels
(linear and spherical); per step, downstream boundaries crossed per unit length (exact for ReLU
nets) vs the Jensen-Shannon divergence of successive outputs, against the same divergence with the
codes frozen (the network with the path's boundaries removed). Effect (version 2): mean per-path
Spearman(crossings, JS) minus Spearman(crossings, frozen-code JS), bootstrap CI over paths; contrast
row: different-label paths carry more boundary-induced change per unit length than same-label paths
(Cliff's delta). Convolutional networks are interpolated between images in pixels and again in a
middle layer (`hidden/...` rows; SKIPPED on other models). Adjusted across the rows.
"""

import numpy as np
import pytest

from polyaudit.analyses import c2
from polyaudit.interventions.evaluators import make_downstream
from polyaudit.interventions.lens import (
    downstream_skip,
    hidden_site,
    labelled_probe,
    site_activations,
    site_for,
)
from polyaudit.verdict import Evidence

HIDDEN = tuple(f"hidden/{k}" for k in c2.ROWS)  # CNNs: paths in a middle layer too
NOT_CNN = ("C2 interpolates a hidden layer as well as the pixels on convolutional networks (the paper's "
           "image setting); this model's paths are its other C2 rows")


def paths_at(subject, audit, spec, site, name, skip) -> dict[str, Evidence]:
    """C2's three rows for paths at one site (None: the input)."""
    skip = skip or downstream_skip(subject.adapter, site, subject.loaded)
    if skip:
        return {k: c2.SPEC.skipped(f"{name}/{k}", skip, stat=c2.ROW_STAT[k]) for k in c2.ROWS}
    acts, labels, contexts = site_activations(subject, spec, site)
    settings = c2.settings_for(audit.profile.name)
    down = make_downstream(subject.loaded, site, contexts, sample_units=settings.units,
                           seed=int(audit.rng(c2.CLAIM, name, "units").integers(2**62)))
    return c2.boundaries_track_semantics(
        down, acts, labels, site=name, rng=audit.rng(c2.CLAIM, name),
        settings=settings, n_boot=audit.profile.n_boot,
        ctx=np.arange(len(labels)),
        notes=f"probe {subject.probe(spec).name}")


def measure(subject, audit, spec, skip) -> dict[str, Evidence]:
    site, name = site_for(subject.adapter, c2.CLAIM)
    rows = paths_at(subject, audit, spec, site, name, skip)
    hidden = hidden_site(subject.adapter)
    if hidden is None:
        rows.update({f"hidden/{k}": c2.SPEC.skipped(f"hidden/{k}", NOT_CNN, stat=c2.ROW_STAT[k]) for k in c2.ROWS})
    else:
        rows.update({f"hidden/{k}": ev for k, ev in paths_at(subject, audit, spec, hidden, hidden.name, skip).items()})
    return rows


@pytest.mark.claim(c2.SPEC, check="boundaries-track-semantics")
@pytest.mark.parametrize("path", c2.ROWS + HIDDEN)
def test_boundaries_track_semantic_change(subject, path, audit):
    spec, skip = labelled_probe(subject, 2 * c2.MIN_PATHS)
    evidence = audit.measure(subject, lambda: measure(subject, audit, spec, skip), probe=spec)
    audit.conclude(evidence[path], subject, probe=spec)
