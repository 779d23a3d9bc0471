"""C5 — one checkpoint: layers with more redundant codes lose less under unit dropout.

Marshall & Kirchner 2024 (arXiv 2401.17975), sec. 5: the redundancy of a layer's code shows in its
eigenspectrum (a steeper decay, alpha further below 0, repeats fewer directions across many units),
and a redundant code survives erasures. Without a family of models, the inference-time variant:
zero a random fraction q of each layer's units (the MLP output of a transformer block, the
nonlinearity's output of a plain network) and measure the loss increase on the probe. Effect:
Spearman across layers of (alpha, loss increase), paired bootstrap CI over probe samples; predicted
positive (flatter layers lose more).
"""

import pytest

from polyaudit.analyses import c5
from polyaudit.verdict import Evidence


def measure(subject, audit) -> dict[str, Evidence]:
    from polyaudit.interventions.dropout_runs import measure_single

    layers, increase, extra = measure_single(subject, rng=audit.rng(c5.CLAIM, subject.spec, "unit-dropout"),
                                             batch_size=audit.profile.batch_size)
    return {"unit": c5.single_evidence(layers, increase, site=extra["unit_site"], n_boot=audit.profile.n_boot,
                                       rng=audit.rng(c5.CLAIM, subject.spec, "bootstrap"),
                                       rank_bounds=[subject.adapter.rank_bound(d.site) for d in layers],
                                       extra=extra)}


@pytest.mark.claim(c5.SPEC, check="unit-dropout")
def test_redundant_layers_lose_less(subject, audit):
    audit.conclude(audit.measure(subject, lambda: measure(subject, audit))["unit"], subject)
