"""C4 — activation eigenspectra follow a power law whose exponent changes with depth.

Marshall & Kirchner 2024, "Understanding polysemanticity in neural networks through coding theory"
(arXiv 2401.17975): the eigenvalues of a layer's activation covariance decay as lambda_n ~ n^alpha
(alpha negative; the paper marks alpha = -1), and alpha changes systematically with depth.
Measured at the residual stream and at the MLP pre-activation of every layer; the effect is the
slope of alpha on relative depth (alpha per unit depth, first layer to last), with the layers as the
replicates: a random-effects meta-regression (within-layer covariance from a paired bootstrap over
units, layer-to-layer scatter by REML), Knapp-Hartung t, adjusted across the two sites. A spectrum
that is not a power law (R^2 < 0.9) makes the row the trend of the log-spectrum slope, which cannot
PASS.
"""

import pytest

from polyaudit.analyses import c4
from polyaudit.verdict import Evidence


def measure(subject, audit) -> dict[str, Evidence]:
    capture = subject.capture()
    evidence = {}
    for site in c4.SITES:
        if site not in subject.adapter.site_kinds:
            evidence[site] = c4.SPEC.skipped(site, f"a {subject.adapter.family} model has no {site} site")
            continue
        layers = capture.get_kind(site)
        evidence[site] = c4.alpha_depth(layers, site=site, n_boot=audit.profile.n_boot,
                                        rng=audit.rng(c4.CLAIM, site),
                                        rank_bound=subject.adapter.rank_bound(layers[0].site))
    return evidence


@pytest.mark.claim(c4.SPEC, check="alpha-depth")
@pytest.mark.parametrize("site", c4.SITES)
def test_alpha_changes_with_depth(subject, site, audit):
    evidence = audit.measure(subject, lambda: measure(subject, audit))[site]
    audit.conclude(evidence, subject)
