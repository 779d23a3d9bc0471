"""The baseline gate end to end (pytester): save, rerun, regressions, refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from polyaudit.serial import decode_array, encode_array

MODEL = ["--model=factory64:make_old", "--probe=digits", "--no-reports", "-p", "no:cacheprovider"]


def _one_error_line(result: pytest.RunResult, *needles: str) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    text = result.stderr.str() + result.stdout.str()
    assert "Traceback" not in text
    lines = [ln for ln in result.stderr.lines if ln.startswith("ERROR:")]
    assert len(lines) == 1, result.stderr.lines
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture
def saved(gate_project: pytest.Pytester) -> pytest.Pytester:
    result = gate_project.runpytest(*MODEL, "--save-baseline=base.json")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    return gate_project


def _shift_effect(site: str, by: float) -> Callable[[dict[str, Any]], None]:
    """Raise one row's effect, CI and bootstrap replicates in a stored report by `by`."""

    def edit(doc: dict[str, Any]) -> None:
        for row in doc["rows"]:
            if row["site"] == site:
                row["effect"] += by
                row["ci"] = [c + by for c in row["ci"]]
                boot = decode_array(row["details"]["boot_effect"]) + by
                row["details"]["boot_effect"] = encode_array(boot)

    return edit


def test_save_then_rerun_passes(saved: pytest.Pytester) -> None:
    from polyaudit.report.load import load_report

    doc = load_report(saved.path / "base.json", require_integrity=True)
    assert {r["site"] for r in doc["rows"]} == {"alpha", "beta"}
    assert all("boot_effect" in r["details"] for r in doc["rows"])
    result = saved.runpytest(*MODEL, "--baseline=base.json")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*baseline base.json: 2 rows compared, 0 regressed*"])


def test_effect_dropped_beyond_tolerance_fails_with_a_readable_diff(saved: pytest.Pytester, resign: Any) -> None:
    resign(saved.path / "base.json", _shift_effect("alpha", 0.5))
    result = saved.runpytest(*MODEL, "--baseline=base.json", "-rf")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes().get("failed") == 1 and result.parseoutcomes().get("passed") == 1
    text = result.stdout.str()
    assert "REGRESSED against baseline base.json: C7-gate[alpha]" in text
    assert "verdict: PASS -> PASS" in text
    assert "effect:  1.3 [" in text and "-> 0.8 [" in text
    assert "drop 0.5, 95% CI [0.5, 0.5] (paired over 200 bootstrap replicates)" in text
    assert "tolerance 0.1 for C7" in text
    assert "C7-gate[beta]" not in text.split("REGRESSED against")[1]


def test_drop_inside_tolerance_passes_and_tolerances_are_configurable(saved: pytest.Pytester, set_effects: Callable[..., None]) -> None:
    set_effects(alpha=0.75, beta=0.6)  # drop 0.05 < default tolerance 0.1
    assert saved.runpytest(*MODEL, "--baseline=base.json").ret == pytest.ExitCode.OK
    tight = saved.runpytest(*MODEL, "--baseline=base.json", "--tolerance=C7=0.01")
    assert tight.ret == pytest.ExitCode.TESTS_FAILED
    assert "tolerance 0.01 for C7" in tight.stdout.str()
    saved.makefile(".toml", pyproject="[tool.polyaudit.tolerance]\ndefault = 0.2\nC7 = 0.02\n")
    from_file = saved.runpytest(*MODEL, "--baseline=base.json")
    assert from_file.ret == pytest.ExitCode.TESTS_FAILED
    assert "tolerance 0.02 for C7" in from_file.stdout.str()
    overridden = saved.runpytest(*MODEL, "--baseline=base.json", "--tolerance=C7=0.3")
    assert overridden.ret == pytest.ExitCode.OK


def test_unpaired_when_seeds_differ(saved: pytest.Pytester, set_effects: Callable[..., None]) -> None:
    set_effects(alpha={"effect": 0.2, "sd": 0.05}, beta=0.6)
    result = saved.runpytest(*MODEL, "--baseline=base.json", "--seed=3")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "unpaired: normal approximation from the two CIs" in result.stdout.str()


def test_verdict_flip_fails(saved: pytest.Pytester, set_effects: Callable[..., None]) -> None:
    set_effects(alpha={"effect": 0.1, "sd": 0.3, "p": 0.5}, beta=0.6)
    alone = saved.runpytest(*MODEL)
    assert alone.ret == pytest.ExitCode.OK  # INCONCLUSIVE alone passes the run ...
    result = saved.runpytest(*MODEL, "--baseline=base.json", "--tolerance=10", "-v")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # ... but not when the baseline had PASS
    text = result.stdout.str()
    assert "verdict: PASS -> INCONCLUSIVE  (flipped away from PASS)" in text
    assert "REGRESSED" in text and result.parseoutcomes().get("failed") == 1


def test_failed_verdict_against_a_pass_baseline_says_both(saved: pytest.Pytester, set_effects: Callable[..., None]) -> None:
    set_effects(alpha={"effect": -0.5, "sd": 0.05}, beta=0.6)
    result = saved.runpytest(*MODEL, "--baseline=base.json", "--json=new.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "FAIL: CI" in text and "PASS -> FAIL" in text
    doc = json.loads((saved.path / "new.json").read_text())
    diff = {r["site"]: r["baseline"] for r in doc["rows"]}
    assert diff["alpha"]["status"] == "regressed" and diff["alpha"]["reasons"] == ["verdict", "effect"]
    assert diff["beta"]["status"] == "ok" and diff["beta"]["method"] == "paired"
    assert doc["baseline"]["path"].endswith("base.json")


def test_new_checkpoint_pairs_with_the_old_one(saved: pytest.Pytester) -> None:
    result = saved.runpytest("--model=factory64:make_new", *MODEL[1:], "--baseline=base.json", "--json=new.json")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    doc = json.loads((saved.path / "new.json").read_text())
    assert {r["baseline"]["base_model"] for r in doc["rows"]} == {"factory64:make_old"}
    assert {r["baseline"]["status"] for r in doc["rows"]} == {"ok"}


def test_mismatched_probe_is_refused(saved: pytest.Pytester) -> None:
    result = saved.runpytest("--model=factory64:make_old", "--probe=stimulus:moving-dot", "--no-reports",
                             "--baseline=base.json")
    _one_error_line(result, "baseline base.json was measured on probe digits", "moving-dot", "--save-baseline")


def test_other_claim_version_is_refused(saved: pytest.Pytester) -> None:
    spec = json.loads((saved.path / "effects.json").read_text())
    spec["version"] = 2
    (saved.path / "effects.json").write_text(json.dumps(spec))
    _one_error_line(saved.runpytest(*MODEL, "--baseline=base.json"), "C7 version 1", "version 2")


def test_other_control_kind_is_refused(saved: pytest.Pytester) -> None:
    _one_error_line(saved.runpytest(*MODEL, "--control=shuffle", "--baseline=base.json"),
                    "was measured with --control=init", "--control=shuffle", "--save-baseline")


def test_baseline_written_before_controls_is_refused(saved: pytest.Pytester, resign: Any) -> None:
    def strip(doc: dict[str, Any]) -> None:  # what a report of the previous version held
        doc.pop("control", None)
        for row in doc["rows"]:
            for key in ("control", "vs_control", "origin"):
                row.pop(key, None)

    resign(saved.path / "base.json", strip)
    _one_error_line(saved.runpytest(*MODEL, "--baseline=base.json"), "written before rows carried their control twin",
                    "--save-baseline")


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda t: t.replace('"effect": 0.8', '"effect": 0.3'), "modified after polyaudit wrote it"),
        (lambda t: t[: len(t) // 2], "not valid JSON, truncated or corrupt"),
        (lambda t: json.dumps({**json.loads(t), "rows": [{"claim": "C7"}]}), "not a polyaudit.report/1"),
        (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "integrity"}), "no integrity checksum"),
        (lambda t: "[1, 2]", "is not a polyaudit report"),
    ],
    ids=["tampered", "truncated", "missing-fields", "unsigned", "not-a-report"],
)
def test_damaged_baseline_is_refused(saved: pytest.Pytester, damage: Callable[[str], str], needle: str) -> None:
    path = saved.path / "base.json"
    path.write_text(damage(path.read_text()))
    _one_error_line(saved.runpytest(*MODEL, "--baseline=base.json"), "baseline", needle)


def test_missing_baseline_is_refused(gate_project: pytest.Pytester) -> None:
    _one_error_line(gate_project.runpytest(*MODEL, "--baseline=nope.json"), "nope.json does not exist")


def test_bad_tolerance_is_refused(saved: pytest.Pytester) -> None:
    _one_error_line(saved.runpytest(*MODEL, "--baseline=base.json", "--tolerance=C7=lots"), "lots")
    _one_error_line(saved.runpytest(*MODEL, "--baseline=base.json", "--tolerance=-1"), ">= 0")


def test_save_baseline_never_overwrites_silently(saved: pytest.Pytester) -> None:
    before = (saved.path / "base.json").read_text()
    _one_error_line(saved.runpytest(*MODEL, "--save-baseline=base.json"), "already exists", "--replace-baseline")
    assert (saved.path / "base.json").read_text() == before
    result = saved.runpytest(*MODEL, "--save-baseline=base.json", "--replace-baseline", "--seed=5")
    assert result.ret == pytest.ExitCode.OK
    assert json.loads((saved.path / "base.json").read_text())["seed"] == 5


def test_saved_baseline_rows_are_paired_replicates(saved: pytest.Pytester) -> None:
    doc = json.loads((saved.path / "base.json").read_text())
    row = next(r for r in doc["rows"] if r["site"] == "alpha")
    boot = decode_array(row["details"]["boot_effect"])
    assert boot.shape == (200,) and abs(float(np.median(boot)) - 0.8) < 0.05
    assert "baseline" not in row
