"""C5 — dropout promotes redundant, error-correcting codes (a family of models).

Marshall & Kirchner 2024, "Understanding polysemanticity in neural networks through coding theory"
(arXiv 2401.17975), sec. 5, Fig. 5 and Thm. 3: networks trained with more dropout learn more
redundant codes, (a) more robust to losing units at test time and (b) spending their variance on
fewer directions (a steeper eigenspectrum: alpha further below 0). Measured on a family of models
identical but for their training dropout rate (`--family`, or the zoo family of a zoo `--model`),
at each layer's unit site: Spearman(train dropout, robustness) and Spearman(train dropout, alpha)
over the models, bootstrap CIs over seeds, permutation p-values, adjusted across layers.
"""

import pytest

from polyaudit.analyses import c5
from polyaudit.errors import PolyauditError
from polyaudit.verdict import Evidence


def measure(family, audit) -> dict[str, Evidence]:
    from polyaudit.interventions.dropout_runs import measure_family

    measured = measure_family([(m.rate, sub) for m, sub in family.members],
                              rng=audit.rng(c5.CLAIM, family.spec, "unit-dropout"),
                              batch_size=audit.profile.batch_size)
    return c5.family_evidence(measured, n_boot=audit.profile.n_boot, n_perm=audit.profile.n_perm,
                              rng=audit.rng(c5.CLAIM, family.spec, "bootstrap"))


def row(family, site, stat, audit) -> Evidence:
    if family.skip_reason:
        return c5.SPEC.skipped(site, family.skip_reason, stat=stat)
    try:
        return audit.measure(family, lambda: measure(family, audit))[f"{stat}:{site}"]
    except PolyauditError as e:  # e.g. a model whose output cannot be scored on the probe
        return c5.SPEC.failed(site, str(e), stat=stat)


@pytest.mark.claim(c5.SPEC, check="dropout-robustness")
def test_more_dropout_more_robust(dropout_family, site, audit):
    audit.conclude(row(dropout_family, site, "robustness", audit), dropout_family)


@pytest.mark.claim(c5.SPEC, check="dropout-alpha")
def test_more_dropout_steeper_spectrum(dropout_family, site, audit):
    audit.conclude(row(dropout_family, site, "alpha", audit), dropout_family)
