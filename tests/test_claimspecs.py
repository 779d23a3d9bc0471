"""Each claim is declared once (`polyaudit.claimspec.ClaimSpec`), and what derives from the spec
agrees with what the claims do: markers name declared checks, plots read keys the rows have, the
results-cache key moves when the code that computes a claim changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyaudit.analyses.catalog import CLAIMS
from polyaudit.cli import discover_claims
from polyaudit.report.plots import PLOTTERS
from polyaudit.store.results import code_closure, code_digest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "rows"


def test_every_claim_file_test_names_a_declared_check() -> None:
    found = discover_claims(ROOT / "claims")
    assert {c["claim"] for c in found} == set(CLAIMS)
    for c in found:
        spec = CLAIMS[c["claim"]]
        assert c["version"] == spec.version
        assert c["name"] in {check.name for check in spec.checks}
    declared = {(s.id, check.name) for s in CLAIMS.values() for check in s.checks}
    assert declared == {(c["claim"], c["name"]) for c in found}, "a declared check without a test"


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_declared_statistics_checks_and_plots_are_consistent(claim: str) -> None:
    spec = CLAIMS[claim]
    keys = [s.key for s in spec.statistics]
    assert len(keys) == len(set(keys))
    for check in spec.checks:
        spec.statistic(check.statistic)  # declared
    for plot in spec.plots:
        assert plot.name in PLOTTERS, f"{claim} declares plot {plot.name!r} that no plotter draws"


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_every_plot_reads_keys_the_claims_rows_carry(claim: str) -> None:
    """The details keys a plot declares are in the rows the audit writes (the golden rows of the
    default audit and every family): a renamed key would silently cost the plot."""
    rows = [r for path in sorted(GOLDEN.glob("*.json")) for r in json.loads(path.read_text()).values()
            if r["claim"] == claim and r["verdict"] not in ("ERROR", "SKIPPED")]
    assert rows, f"no measured {claim} row in the golden rows"
    carried = set().union(*(r["details"] for r in rows))
    for plot in CLAIMS[claim].plots:
        missing = set(plot.reads) - carried
        assert not missing, f"{claim} plot {plot.name!r} reads {sorted(missing)}, which no row carries"


def test_the_code_hash_covers_what_the_analysis_imports(tmp_path: Path) -> None:
    spec = CLAIMS["C1"]
    modules = code_closure(spec.modules)
    assert {"polyaudit.analyses.c1", "polyaudit.measures.clustering", "polyaudit.measures.purity",
            "polyaudit.stats"} <= set(modules)
    original, edited = tmp_path / "test_claim.py", tmp_path / "test_claim_edited.py"
    original.write_text("from polyaudit.analyses import c4\n")
    edited.write_text("from polyaudit.analyses import c4\n# edited\n")
    assert "polyaudit.analyses.c4" in code_closure((), (str(original),))
    assert code_digest((), (str(original),)) != code_digest((), (str(edited),))
    assert code_digest(spec.modules) != code_digest(CLAIMS["C2"].modules)
