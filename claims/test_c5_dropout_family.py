"""C5 — dropout promotes redundant, error-correcting codes (a family of models).

Marshall & Kirchner 2024, "Understanding polysemanticity in neural networks through coding theory"
(arXiv 2401.17975), sec. 5, Fig. 5 and Thm. 3: networks trained with more dropout learn more
redundant codes, (a) more robust to losing units at test time and (b) spending their variance on
fewer directions (a steeper eigenspectrum: alpha further below 0). Measured on a family of models
identical but for their training dropout rate (`--family`, or the zoo family of a zoo `--model`),
at each layer's unit site: Spearman(train dropout, robustness) and Spearman(train dropout, alpha)
over the models, bootstrap CIs over seeds, permutation p-values, Holm across layers.
"""

import pytest

from polyaudit.analyses import c5
from polyaudit.errors import PolyauditError
from polyaudit.verdict import Evidence


def measure(family, audit) -> dict[str, Evidence]:
    from polyaudit.analyses.c5_collect import measure_family

    measured = measure_family([(m.rate, sub) for m, sub in family.members],
                              rng=audit.rng(c5.CLAIM, family.spec, "unit-dropout"),
                              batch_size=audit.profile.batch_size)
    return c5.family_evidence(measured, n_boot=audit.profile.n_boot, n_perm=audit.profile.n_perm,
                              rng=audit.rng(c5.CLAIM, family.spec, "bootstrap"),
                              correction=audit.correction)


def row(family, site, stat, statistic, audit) -> Evidence:
    if family.skip_reason:
        return Evidence.skipped(c5.CLAIM, c5.VERSION, site, statistic, family.skip_reason)
    try:
        return audit.measure(family, lambda: measure(family, audit))[f"{stat}:{site}"]
    except PolyauditError as e:  # e.g. a model whose output cannot be scored on the probe
        return Evidence.failed(c5.CLAIM, c5.VERSION, site, statistic, str(e))


@pytest.mark.claim(c5.CLAIM, version=c5.VERSION, name="dropout-robustness", statistic=c5.STAT_ROBUSTNESS)
def test_more_dropout_more_robust(dropout_family, site, audit):
    audit.conclude(row(dropout_family, site, "robustness", c5.STAT_ROBUSTNESS, audit), dropout_family)


@pytest.mark.claim(c5.CLAIM, version=c5.VERSION, name="dropout-alpha", statistic=c5.STAT_ALPHA)
def test_more_dropout_steeper_spectrum(dropout_family, site, audit):
    audit.conclude(row(dropout_family, site, "alpha", c5.STAT_ALPHA, audit), dropout_family)
