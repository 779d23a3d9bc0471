"""Every collected claim test yields a row: an unexpected exception inside a claim (in its body or
in its measurement) becomes an ERROR row whose notes give the exception in one line and say it is a
polyaudit bug to report; the traceback goes to the row's details and is printed only with -v or
--full-trace."""

from __future__ import annotations

import json

import pytest

CRASHING = '''
import pytest

from polyaudit.claimspec import Check, ClaimSpec, Statistic

SPEC = ClaimSpec("C7", 1, "crashes", "tests", (Statistic("s", "stat", min_effect=0.1),),
                 (Check("boom", "s", sites=("resid",)),))


def measure(subject):
    raise IndexError("Target 2021 is out of bounds")


@pytest.mark.claim(SPEC, check="boom")
@pytest.mark.parametrize("site", ["a", "b"])
def test_boom(subject, site, audit):
    rows = audit.measure(subject, lambda: measure(subject))
    audit.conclude(rows[site], subject)


@pytest.mark.claim(SPEC, check="boom")
def test_in_the_body(subject, audit):
    {}["missing"]
'''


def _run(project: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[dict]]:
    project.makepyfile(test_crashing=CRASHING)
    out = project.path / "out.json"
    result = project.runpytest("--model=factory_mod:make", f"--json={out}", "--no-reports", "--control=none",
                               "-p", "no:cacheprovider", *args)
    return result, json.loads(out.read_text())["rows"]


def test_a_crash_inside_a_claim_still_leaves_a_row(project: pytest.Pytester) -> None:
    result, rows = _run(project)
    assert len(rows) == 3 and {r["verdict"] for r in rows} == {"ERROR"}
    by_site = {r["site"]: r for r in rows}
    assert set(by_site) == {"a", "b", "-"}
    for r in rows:
        assert "polyaudit bug" in r["notes"] and "\n" not in r["notes"]
        assert "Traceback" in r["details"]["traceback"] or "Error" in r["details"]["traceback"]
    assert "IndexError: Target 2021 is out of bounds" in by_site["a"]["notes"]
    assert "KeyError" in by_site["-"]["notes"]
    text = result.stdout.str()
    assert "Traceback" not in text and "raise IndexError" not in text  # one line per test by default
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_the_traceback_is_printed_with_full_trace(project: pytest.Pytester) -> None:
    result, _rows = _run(project, "--full-trace")
    assert "raise IndexError" in result.stdout.str()
