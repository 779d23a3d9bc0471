"""The `polyaudit` command: report, compare, list, validate (reads reports, never runs a model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polyaudit.cli import CACHE_PARTS, EXIT_OK, EXIT_REFUSED, EXIT_REGRESSED, main
from polyaudit.report.document import build_document, dumps
from polyaudit.report.load import sign
from polyaudit.serial import encode_array
from polyaudit.store.limit import PARTS

REPO = Path(__file__).resolve().parents[2]
RUN = {"created": "20260101T000000Z", "seed": 0, "profile": "quick", "device": "cpu", "versions": {}}


def _doc(effects: dict[str, float], *, model: str = "ckpt", probe: str = "ab" * 32, version: int = 1) -> dict[str, Any]:
    z = np.random.default_rng(0).standard_normal(200)
    rows = []
    for site, effect in effects.items():
        boot = effect + 0.05 * z
        lo, hi = np.percentile(boot, [2.5, 97.5])
        rows.append({"claim": "C4", "claim_version": version, "test_id": f"C4-alpha-depth[{model}:{site}]",
                     "model": model, "site": site, "statistic": "spearman(alpha, layer)", "effect": effect,
                     "ci": [lo, hi], "p": 0.001, "p_adj": 0.002, "n": 400, "predicted": "nonzero",
                     "verdict": "PASS" if lo > 0 or hi < 0 else "INCONCLUSIVE", "notes": "",
                     "details": {"boot_effect": encode_array(boot), "n_boot": 200}, "control": None,
                     "provenance": {"model": {"spec": f"./{model}", "revision": None, "sha256": "0" * 64},
                                    "probe": {"name": "digits", "sha256": probe, "n_samples": 400}}})
    return sign(build_document(rows, RUN))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    docs = {"base": _doc({"resid": -0.8, "mlp_pre": -0.6}, model="old-ckpt"),
            "same": _doc({"resid": -0.78, "mlp_pre": -0.6}, model="new-ckpt"),
            "worse": _doc({"resid": -0.3, "mlp_pre": -0.6}, model="new-ckpt"),
            "otherprobe": _doc({"resid": -0.8, "mlp_pre": -0.6}, probe="cd" * 32),
            "v2": _doc({"resid": -0.8, "mlp_pre": -0.6}, version=2)}
    out = {}
    for name, doc in docs.items():
        out[name] = tmp_path / f"{name}.json"
        out[name].write_text(dumps(doc))
    return out


def test_report_renders_html_md_and_a_table(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html, md = tmp_path / "o" / "r.html", tmp_path / "o" / "r.md"
    assert main(["report", str(files["base"]), "--html", str(html), "--md", str(md)]) == EXIT_OK
    assert html.read_text().startswith("<!DOCTYPE html>") and "| claim | model | site |" in md.read_text()
    assert main(["report", str(files["base"])]) == EXIT_OK
    assert "polyaudit verdicts" in capsys.readouterr().out


def test_report_with_a_baseline_adds_the_comparison(files: dict[str, Path], tmp_path: Path) -> None:
    md, js = tmp_path / "pr.md", tmp_path / "pr.json"
    code = main(["report", str(files["worse"]), "--baseline", str(files["base"]), "--md", str(md), "--json", str(js)])
    assert code == EXIT_REGRESSED
    assert "| vs baseline |" in md.read_text() and "REGRESSED: drop 0.5" in md.read_text()
    from polyaudit.report.load import load_report

    doc = load_report(js, require_integrity=True)
    assert doc["baseline"]["path"] == str(files["base"])
    assert [r["baseline"]["status"] for r in doc["rows"]] == ["regressed", "ok"]


def test_compare_exit_status_is_the_gate(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(files["base"]), str(files["same"])]) == EXIT_OK
    out = capsys.readouterr().out
    assert "C4-alpha-depth[resid]" in out and "paired" in out and "0 regressed" in out
    assert main(["compare", str(files["base"]), str(files["worse"])]) == EXIT_REGRESSED
    out = capsys.readouterr().out
    assert "REGRESSED against baseline base.json: C4-alpha-depth[resid] (model new-ckpt vs old-ckpt)" in out
    assert "drop 0.5, 95% CI [0.5, 0.5] (paired over 200 bootstrap replicates)" in out
    assert main(["compare", str(files["base"]), str(files["worse"]), "--tolerance", "C4=0.6"]) == EXIT_OK


def test_compare_reads_tolerances_from_pyproject(files: dict[str, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text("[tool.polyaudit.tolerance]\nC4 = 0.7\n")
    assert main(["compare", str(files["base"]), str(files["worse"]), "--config", str(cfg)]) == EXIT_OK


@pytest.mark.parametrize(("new", "needle"), [("otherprobe", "measured on probe digits"), ("v2", "C4 version 1")])
def test_compare_refuses_incomparable_runs(files: dict[str, Path], new: str, needle: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(files["base"]), str(files[new])]) == EXIT_REFUSED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polyaudit: error: ") and needle in err[0]


def test_tampered_and_truncated_inputs_are_refused(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = files["base"].read_text()
    files["base"].write_text(text.replace('"effect": -0.8', '"effect": -0.9'))
    assert main(["compare", str(files["base"]), str(files["same"])]) == EXIT_REFUSED
    assert "modified after polyaudit wrote it" in capsys.readouterr().err
    assert main(["validate", str(files["base"])]) == EXIT_REFUSED
    files["same"].write_text(files["same"].read_text()[:100])
    assert main(["report", str(files["same"])]) == EXIT_REFUSED
    assert "truncated or corrupt" in capsys.readouterr().err
    assert main(["validate", str(files["worse"])]) == EXIT_OK
    with pytest.raises(SystemExit) as info:
        main(["compare", str(files["worse"])])
    assert info.value.code == EXIT_REFUSED  # a usage error: the same code as pytest's


def test_list_shows_claims_versions_and_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--claims", str(REPO / "claims"), "--json"]) == EXIT_OK
    claims = {c["claim"]: c for c in json.loads(capsys.readouterr().out)}
    assert claims["C4"]["version"] >= 1 and claims["C4"]["sites"] == ["resid", "mlp_pre"]
    assert claims["C4"]["min_samples"] > 0 and claims["C4"]["statistic"]
    assert main(["list", "--claims", str(REPO / "no-such-folder")]) == EXIT_REFUSED


def test_list_outside_a_clone_shows_the_installed_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no ./claims here: the claims shipped in the package (polyaudit.claims)
    assert main(["list", "--json"]) == EXIT_OK
    assert {c["claim"] for c in json.loads(capsys.readouterr().out)} >= {"C1", "C2", "C3", "C4", "C5", "C6"}


def test_the_command_runs_as_a_program_without_torch(files: dict[str, Path]) -> None:
    code = ("import sys, runpy; sys.argv = ['polyaudit', 'compare', sys.argv[1], sys.argv[2]]\n"
            "try:\n    runpy.run_module('polyaudit.cli', run_name='__main__')\n"
            "except SystemExit as e:\n    assert 'torch' not in sys.modules; raise")
    proc = subprocess.run([sys.executable, "-c", code, str(files["base"]), str(files["worse"])],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == EXIT_REGRESSED, proc.stderr
    assert "REGRESSED" in proc.stdout


def test_cache_info_and_clear_touch_only_polyaudit_folders(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cache"
    for part in ("activations", "results", "zoo", "plots"):
        (root / part / "ab").mkdir(parents=True)
        (root / part / "ab" / "entry.bin").write_bytes(b"x" * 1024)
    keep = root / "not-ours.txt"
    keep.write_text("user file")
    assert main(["cache", "info", "--cache-dir", str(root)]) == 0
    assert "1 files" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache-dir", str(root), "--only", "results"]) == 0
    assert CACHE_PARTS == PARTS  # the command clears what the cap prunes
    assert not (root / "results").exists() and (root / "zoo").exists()
    assert main(["cache", "clear", "--cache-dir", str(root)]) == 0
    assert not any((root / p).exists() for p in ("activations", "results", "zoo", "plots"))
    assert keep.read_text() == "user file"
    assert "empty" in capsys.readouterr().out
