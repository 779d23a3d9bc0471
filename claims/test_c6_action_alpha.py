"""C6 — the smoothness of random projections tracks the eigenspectrum exponent alpha.

Marshall & Kirchner 2024 (arXiv 2401.17975), sec. 5, Fig. 4: project a layer's activations along a
smooth stimulus (a dot moving on a circle; for language models, an input embedding moved on a
circle through two token embeddings) on 1,000 random directions r ~ N(0, I/m). The action of the
projected trajectories (half their mean sum of squared successive differences) is larger where
the eigenspectrum is flatter (alpha nearer 0). alpha is fitted on the stimulus ensemble itself (the
frames of the loops), the spectrum the theory links to the smoothness; the probe's alpha is in the
details. Both drift with depth, so the effect is Spearman of their changes between adjacent layers
(change in alpha against change in log relative action), exact permutation p, Fisher-z interval
(5 layers or fewer cannot reach significance), per site (residual stream, MLP pre-activation),
adjusted across sites.
"""

import pytest

from polyaudit.analyses import c6
from polyaudit.verdict import Evidence


def measure(subject, audit) -> dict[str, Evidence]:
    from polyaudit.interventions.stimuli import collect

    evidence = {}
    for site in c6.SITES:
        if site not in subject.adapter.site_kinds:
            evidence[site] = c6.SPEC.skipped(site, f"a {subject.adapter.family} model has no {site} site")
            continue
        layers, trajs, stimulus = collect(subject, site, audit.rng(c6.CLAIM, site, "stimulus"))
        evidence[site] = c6.action_alpha(layers, trajs, site=site, rng=audit.rng(c6.CLAIM, site),
                                         rank_bounds=[subject.adapter.rank_bound(d.site) for d in layers],
                                         extra={"stimulus": stimulus})
    return evidence


@pytest.mark.claim(c6.SPEC, check="action-alpha")
@pytest.mark.parametrize("site", c6.SITES)
def test_action_tracks_alpha(subject, site, audit):
    audit.conclude(audit.measure(subject, lambda: measure(subject, audit))[site], subject)
