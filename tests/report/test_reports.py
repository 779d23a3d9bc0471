"""Report files of a run: JSON schema, integrity, side-by-side multi-model layout, self-contained HTML
(rendered in headless Chromium), atomic writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from report_fakes import EXPECTED_PLOTS_PER_MODEL, FACTORY, PLOT_CLAIMS

from polyaudit.errors import PolyauditError
from polyaudit.report.load import load_report, report_schema, schema_errors

TWO_MODELS = ["--model=factory64:make_old", "--model=factory64:make_new", "--probe=digits",
              "-p", "no:cacheprovider"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


@pytest.fixture
def plot_run(pytester: pytest.Pytester) -> pytest.Pytester:
    """A two-model run of the C1-C6 stand-ins (every kind of plot data), with every report written."""
    pytester.makepyfile(factory64=FACTORY, test_plot_claims=PLOT_CLAIMS)
    pytester.syspathinsert()
    result = pytester.runpytest(*TWO_MODELS, "--json=out/run.json", "--md=out/run.md", "--html=out/run.html",
                                "--report-dir=reps")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    return pytester


def test_schema_is_valid_and_rejects_bad_documents() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(report_schema())
    good = {"schema": "polyaudit.report/1", "model": {"spec": "m", "revision": None, "sha256": None},
            "probe": {}, "seed": 0, "versions": {}, "rows": []}
    assert schema_errors(good) == []
    row = {"claim": "C4", "claim_version": 1, "test_id": "t", "model": "m", "site": "s", "statistic": "x",
           "effect": 0.5, "ci": [0.1, 0.9], "p": 0.01, "p_adj": 0.02, "n": 10, "verdict": "PASS",
           "notes": "", "details": {}}
    assert schema_errors({**good, "rows": [row]}) == []
    for bad, where in (({**row, "verdict": "MAYBE"}, "rows/0/verdict"), ({**row, "p": 1.5}, "rows/0/p"),
                       ({k: v for k, v in row.items() if k != "effect"}, "rows/0"),
                       ({**row, "ci": [0.1]}, "rows/0/ci")):
        errors = schema_errors({**good, "rows": [bad]})
        assert errors and errors[0].startswith(where), errors
    assert schema_errors({**good, "schema": "polyaudit.report/2"})


def test_every_report_of_a_run_validates_and_sits_side_by_side(plot_run: pytest.Pytester) -> None:
    root = plot_run.path
    jsons = [root / "out/run.json", *sorted((root / "reps").rglob("*.json"))]
    folders = sorted(p.name for p in (root / "reps").iterdir())
    assert folders == ["factory64_make_new", "factory64_make_old", "factory64_make_old+factory64_make_new"]
    assert len(jsons) == 4
    for path in jsons:
        doc = load_report(path, require_integrity=True)  # schema + checksum
        assert doc["schema"] == "polyaudit.report/1"
    for folder in folders:
        assert {p.suffix for p in (root / "reps" / folder).iterdir()} == {".json", ".md", ".html"}
    md = (root / "out/run.md").read_text()
    assert "| claim | site | statistic | `factory64:make_old` | `factory64:make_new` |" in md
    html = (root / "out/run.html").read_text()
    assert "<th>factory64:make_old</th><th>factory64:make_new</th>" in html
    assert "polyaudit side by side" in plot_run.runpytest(*TWO_MODELS, "--no-reports").stdout.str()


def test_html_is_self_contained(plot_run: pytest.Pytester) -> None:
    html = (plot_run.path / "out/run.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "url(" not in html and "@import" not in html
    figures = re.findall(r'<figure class="plot" data-plot="([^"]+)"><img alt="[^"]*" src="data:image/png;base64,', html)
    assert len(figures) == 2 * EXPECTED_PLOTS_PER_MODEL
    kinds = {f.split(":")[1] for f in figures}
    assert kinds == {"purity", "paths", "crossings", "scale", "alpha-depth", "spectra", "dropout",
                     "dropout-layers", "action-alpha"}
    assert html.index('id="summary"') < html.index('id="plots"') < html.index('id="provenance"')
    for verdict_class in ("v-PASS",):
        assert verdict_class in html


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def test_html_renders_every_plot_in_headless_chromium(plot_run: pytest.Pytester) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no headless Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")
    page = plot_run.path / "out/run.html"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body, f"chromium printed no DOM (exit {proc.returncode}): {proc.stderr[-500:]}"
    expected = re.search(r'data-plots-expected="(\d+)"', body.group(0))
    rendered = re.search(r'data-plots-rendered="(\d+)"', body.group(0))
    assert expected and rendered, body.group(0)
    assert int(expected.group(1)) == 2 * EXPECTED_PLOTS_PER_MODEL
    assert int(rendered.group(1)) == int(expected.group(1)), "some plots did not decode in the browser"
    assert "polyaudit report" in proc.stdout and 'id="provenance"' in proc.stdout


WRITER = textwrap.dedent(
    """
    import json, sys
    from polyaudit.serial import atomic_write_text
    path, n = sys.argv[1], int(sys.argv[2])
    small = json.dumps({"kind": "small", "rows": list(range(10))})
    large = json.dumps({"kind": "large", "rows": ["x" * 100] * 20000})
    for i in range(n):
        atomic_write_text(path, large if i % 2 else small)
    """
)


def test_a_report_being_written_is_never_read_half_written(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text(json.dumps({"kind": "old", "rows": []}))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), "150"])
    reads, kinds = 0, set()
    deadline = time.monotonic() + 60
    while writer.poll() is None and time.monotonic() < deadline:
        doc = json.loads(target.read_text())  # a half-written file would not parse
        kinds.add(doc["kind"])
        reads += 1
    assert writer.wait(timeout=60) == 0
    assert reads > 10 and kinds >= {"small", "large"}
    assert not [p for p in tmp_path.iterdir() if p.name != "report.json"], "temporary files left behind"


def test_a_failed_write_keeps_the_old_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polyaudit.serial import atomic_write_text

    target = tmp_path / "report.json"
    target.write_text("old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write_text(target, "new" * 1000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_reports_are_readable_by_others(tmp_path: Path) -> None:
    from polyaudit.serial import atomic_write_text

    assert atomic_write_text(tmp_path / "r.md", "x").stat().st_mode & 0o044 == 0o044


def test_load_report_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text, needle in (("{", "not valid JSON"), ('{"schema": "x"}', "not a polyaudit report"),
                         ("\xff\xfe", "cannot be read")):
        bad.write_text(text, encoding="latin-1")
        with pytest.raises(PolyauditError, match=needle) as info:
            load_report(bad)
        assert "\n" not in str(info.value)


def test_odd_plot_data_costs_the_plot_not_the_report() -> None:
    from polyaudit.report.document import build_document
    from polyaudit.report.html import render_html

    row = {"claim": "C4", "claim_version": 1, "test_id": "C4-x[m:resid]", "model": "m", "site": "resid",
           "statistic": "s", "effect": 0.5, "ci": [0.1, 0.9], "p": 0.01, "p_adj": 0.01, "n": 5,
           "verdict": "PASS", "notes": "", "details": {"layers": [{"layer": 0, "alpha": "steep", "ci": 3}]}}
    html = render_html(build_document([row], {"created": "t", "seed": 0}))
    assert "plot unavailable (TypeError" in html and 'data-plots-expected="0"' in html
    assert 'id="provenance"' in html
