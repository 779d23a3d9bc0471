"""C5 — dropout promotes redundant, error-correcting codes (a family of models).

Marshall & Kirchner 2024, "Understanding polysemanticity in neural networks through coding theory"
(arXiv 2401.17975), sec. 5, Fig. 5 and Thm. 3: networks trained with more dropout learn more
redundant codes, robust to losing units and spending their variance on fewer directions. Measured on
a family of models identical but for their training dropout rate (`--family`, or the zoo family of a
zoo `--model`), at each layer's unit site, as Spearman over the models (bootstrap CIs over models,
permutation p-values, every row of the family adjusted together):
- robustness to perturbations the models were NOT trained against: Gaussian noise on every unit,
  the highest-variance units ablated, dropout at the input (one row per family);
- robustness to unit dropout at the trained site: a manipulation check (training with dropout all
  but guarantees it), reported as such;
- a steeper spectrum (alpha further below 0): a sign polyaudit derives (a redundant code adds
  variance to few directions; Thm. 3's capacity (1 - D) x base), not one the paper states.
"""

import pytest

from polyaudit.analyses import c5
from polyaudit.errors import PolyauditError
from polyaudit.verdict import Evidence


def measure(family, audit) -> dict[str, Evidence]:
    from polyaudit.interventions.dropout_runs import measure_family

    measured = measure_family([(m.rate, sub) for m, sub in family.members],
                              rng=audit.rng(c5.CLAIM, "family", "unit-dropout"),
                              batch_size=audit.profile.batch_size)
    return c5.family_evidence(measured, n_boot=audit.profile.n_boot, n_perm=audit.profile.n_perm,
                              rng=audit.rng(c5.CLAIM, "family", "bootstrap"))


def row(family, site, stat, audit) -> Evidence:
    if family.skip_reason:
        return c5.SPEC.skipped(site, family.skip_reason, stat=stat)
    try:
        rows = audit.measure(family, lambda: measure(family, audit))
    except PolyauditError as e:  # e.g. a model whose output cannot be scored on the probe
        return c5.SPEC.failed(site, str(e), stat=stat)
    if f"{stat}:{site}" in rows:
        return rows[f"{stat}:{site}"]
    # (input dropout is one row per family, at its first layer: a model with no input to drop out)
    return c5.SPEC.skipped(site, "the model's adapter names no input to drop out (no input embedding site)",
                           stat=stat)


@pytest.mark.claim(c5.SPEC, check="dropout-noise")
def test_more_dropout_more_robust_to_noise(dropout_family, site, audit):
    audit.conclude(row(dropout_family, site, "noise", audit), dropout_family)


@pytest.mark.claim(c5.SPEC, check="dropout-ablation")
def test_more_dropout_more_robust_to_ablation(dropout_family, site, audit):
    audit.conclude(row(dropout_family, site, "ablation", audit), dropout_family)


@pytest.mark.claim(c5.SPEC, check="dropout-input")
def test_more_dropout_more_robust_to_input_dropout(dropout_family, site, audit):
    audit.conclude(row(dropout_family, site, "input", audit), dropout_family)


@pytest.mark.claim(c5.SPEC, check="dropout-robustness")
def test_more_dropout_more_robust(dropout_family, site, audit):
    """Manipulation check: unit dropout at the site the family was trained with dropout."""
    audit.conclude(row(dropout_family, site, "robustness", audit), dropout_family)


@pytest.mark.claim(c5.SPEC, check="dropout-alpha")
def test_more_dropout_steeper_spectrum(dropout_family, site, audit):
    audit.conclude(row(dropout_family, site, "alpha", audit), dropout_family)
