"""The plugin's options, verdict mapping, table, JSON report and repeatable --model (pytester)."""

from __future__ import annotations

import json

import pytest

ROW_KEYS = {"claim", "claim_version", "test_id", "model", "site", "statistic", "effect", "ci", "p",
            "p_adj", "n", "verdict", "notes", "details"}


def test_options_are_in_one_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    assert "polyaudit: interpretability claims as tests" in out
    for opt in ("--model", "--probe", "--device", "--dtype", "--seed", "--profile", "--json",
                "--report-dir", "--strict", "--revision", "--trust-remote-code"):
        assert opt in out, opt


def test_verdicts_map_to_outcomes(project: pytest.Pytester, fake_claim: str) -> None:
    project.makepyfile(test_fake_claim=fake_claim)
    out_json = project.path / "out.json"
    result = project.runpytest("--model=factory_mod:make", f"--json={out_json}", "--no-reports", "-v")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1
    assert outcomes.get("failed") == 1
    assert outcomes.get("inconclusive") == 1
    assert outcomes.get("errors", outcomes.get("error")) == 1
    assert outcomes.get("skipped") == 1
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "INCONCLUSIVE" in text and "Traceback" not in text
    doc = json.loads(out_json.read_text())
    verdicts = {r["site"]: r["verdict"] for r in doc["rows"]}
    assert verdicts == {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE",
                        "error": "ERROR", "skip": "SKIPPED"}


def test_inconclusive_alone_passes_the_run_but_fails_under_strict(project: pytest.Pytester, fake_claim: str) -> None:
    project.makepyfile(test_fake_claim=fake_claim)
    args = ["--model=factory_mod:make", "--no-reports", "-k", "inconclusive or pass"]
    relaxed = project.runpytest(*args)
    assert relaxed.ret == pytest.ExitCode.OK
    assert relaxed.parseoutcomes().get("inconclusive") == 1
    strict = project.runpytest(*args, "--strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    assert strict.parseoutcomes().get("failed") == 1


def test_table_and_json_schema(project: pytest.Pytester, fake_claim: str) -> None:
    project.makepyfile(test_fake_claim=fake_claim)
    out_json = project.path / "sub" / "report.json"
    result = project.runpytest("--model=factory_mod:make", f"--json={out_json}", "--seed=7",
                               "--profile=quick", f"--report-dir={project.path / 'reps'}")
    text = result.stdout.str()
    for col in ("site", "stat", "effect [CI]", "p_adj", "verdict", "twin"):
        assert col in text, col
    for head in ("factory_mod:make", "seed 7", "profile quick", "device cpu", "torch"):
        assert head in text, head
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "polyaudit.report/1"
    assert {"spec", "revision", "sha256"} <= set(doc["model"])
    assert doc["model"]["spec"] == "factory_mod:make" and len(doc["model"]["sha256"]) == 64
    assert doc["seed"] == 7 and isinstance(doc["versions"], dict) and doc["probe"]
    for row in doc["rows"]:
        assert set(row) >= ROW_KEYS
        assert row["verdict"] in {"PASS", "FAIL", "INCONCLUSIVE", "ERROR", "SKIPPED"}
        assert isinstance(row["ci"], list) and len(row["ci"]) == 2
    md = list((project.path / "reps").rglob("*.md"))
    js = list((project.path / "reps").rglob("*.json"))
    assert len(md) == 1 and len(js) == 1
    assert "| claim | model | site |" in md[0].read_text()


def test_repeatable_model_parametrizes(project: pytest.Pytester, fake_claim: str) -> None:
    project.makepyfile(test_fake_claim=fake_claim)
    out_json = project.path / "two.json"
    result = project.runpytest("--model=factory_mod:make", "--model=factory_mod:make_other",
                               f"--json={out_json}", "--no-reports", "-v", "-k", "pass")
    text = result.stdout.str()
    assert "test_fake[factory_mod:make-pass]" in text
    assert "test_fake[factory_mod:make_other-pass]" in text
    doc = json.loads(out_json.read_text())
    assert {r["model"] for r in doc["rows"]} == {"factory_mod:make", "factory_mod:make_other"}
    assert len(doc["models"]) == 2


def test_rows_reach_junit_xml(project: pytest.Pytester, fake_claim: str) -> None:
    project.makepyfile(test_fake_claim=fake_claim)
    xml = project.path / "junit.xml"
    project.runpytest("--model=factory_mod:make", "--no-reports", f"--junitxml={xml}", "-k", "pass")
    assert "polyaudit_row" in xml.read_text()
