"""C5 — one checkpoint: layers with more redundant codes lose less under unit dropout.

polyaudit's corollary of Marshall & Kirchner 2024 (arXiv 2401.17975), sec. 5, not a prediction the
paper makes: the redundancy of a layer's code shows in its eigenspectrum (a steeper decay, alpha
further below 0, repeats fewer directions across many units), and a redundant code survives
erasures. Without a family of models: zero a random fraction q of each layer's units (the MLP output
of a transformer block, the nonlinearity's output of a plain network) and measure the loss increase
on the probe (a model without an output head: the change of its own representation, cosine; see
docs/claims.md). Both alpha and the loss increase drift with depth, so the effect is Spearman of their
changes between adjacent layers (exact permutation p, Fisher-z interval); predicted positive (a layer
whose spectrum flattens loses more).
"""

import pytest

from polyaudit.analyses import c5
from polyaudit.verdict import Evidence


def measure(subject, audit) -> dict[str, Evidence]:
    from polyaudit.interventions.dropout_runs import measure_single

    layers, increase, extra = measure_single(subject, rng=audit.rng(c5.CLAIM, "single", "unit-dropout"),
                                             batch_size=audit.profile.batch_size)
    return {"unit": c5.single_evidence(layers, increase, site=extra["unit_site"],
                                       rng=audit.rng(c5.CLAIM, "single", "bootstrap"),
                                       rank_bounds=[subject.adapter.rank_bound(d.site) for d in layers],
                                       extra=extra)}


@pytest.mark.claim(c5.SPEC, check="unit-dropout")
def test_redundant_layers_lose_less(subject, audit):
    from polyaudit.interventions.downstream import output_space

    if output_space(subject.adapter) is None:
        from polyaudit.interventions.unit_dropout import unit_site_kind

        site = unit_site_kind(subject.adapter)
        audit.conclude(c5.SPEC.skipped(site, "the model has no output head and no token representation: the "
                                             "loss increase under unit dropout needs an output to score",
                                       stat="single"), subject)
        return
    audit.conclude(audit.measure(subject, lambda: measure(subject, audit))["unit"], subject)
