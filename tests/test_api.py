"""The Python API (polyaudit.api): one implementation with two front ends. The same model, probe and
seed give the same rows through `polyaudit.audit` as through `pytest claims/`; in-memory models
(an nn.Module with probe tensors, a Hugging Face model with its tokenizer) are audited; the result
renders as a DataFrame, HTML, Markdown, JSON and a model card; the executed example runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = "zoo:mlp-digits?width=16&depth=3"
KEEP = ("test_id", "effect", "ci", "p", "p_adj", "n", "verdict", "statistic", "control", "vs_control", "origin")


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, timeout=900)


@pytest.mark.slow
def test_api_and_pytest_give_identical_rows(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "claims" / "test_c4_alpha_depth.py"),
                          f"--model={SPEC}", "--profile=quick", f"--json={tmp_path / 'cli.json'}", "--no-reports",
                          "-q", "-p", "no:cacheprovider"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=False, timeout=900)
    assert cli.returncode in (0, 1), cli.stdout[-2000:]
    api = _python(f"import polyaudit; polyaudit.audit({SPEC!r}, claims=['C4'], profile='quick')"
                  f".to_json({str(tmp_path / 'api.json')!r})", tmp_path)
    assert api.returncode == 0, api.stderr[-2000:]
    rows = [{r["test_id"]: {k: r.get(k) for k in KEEP} for r in json.loads((tmp_path / f).read_text())["rows"]}
            for f in ("cli.json", "api.json")]
    assert rows[0] and rows[0] == rows[1]


@pytest.mark.slow
def test_an_in_memory_hugging_face_model_with_its_tokenizer(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    code = f"""
import transformers, polyaudit
folder = {str(tiny_models['gpt2'])!r}
model = transformers.AutoModelForCausalLM.from_pretrained(folder)
tok = transformers.AutoTokenizer.from_pretrained(folder)
res = polyaudit.audit(model, tokenizer=tok, name="tiny gpt2", claims=["C4"], profile="quick", control="none")
df = res.to_pandas()
assert list(df["claim"]) == ["C4", "C4"], df
assert set(df["model"]) == {{"tiny_gpt2"}}, df["model"]
assert df["probe_sha256"].notna().all()
print("OK", res.summary)
"""
    out = _python(code, tmp_path)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


@pytest.mark.slow
def test_the_executed_example(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "api_quickstart.py"), str(tmp_path / "ex")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "verdict" in out.stdout and "C1" in out.stdout and "C4" in out.stdout
    html = (tmp_path / "ex" / "audit.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "small_net" in html
    doc = json.loads((tmp_path / "ex" / "audit.json").read_text())
    assert doc["schema"] == "polyaudit.report/1" and doc["rows"]


def test_result_renderers_and_compare(tmp_path: Path) -> None:
    from polyaudit.api import AuditResult, compare
    from polyaudit.report.load import load_report, validate

    doc = json.loads((ROOT / "tests" / "report" / "golden" / "single.json").read_text()) \
        if (ROOT / "tests" / "report" / "golden" / "single.json").exists() else _doc()
    res = AuditResult(doc)
    frame = res.to_pandas()
    assert len(frame) == len(doc["rows"]) and {"claim", "effect", "ci_lo", "ci_hi", "verdict"} <= set(frame.columns)
    path = res.to_json(tmp_path / "r.json")
    validate(load_report(path))
    assert res.save_markdown(tmp_path / "r.md").read_text().startswith("#")
    assert "model-index:" in res.model_card() and "value:" in res.model_card()
    diff = compare(path, res)
    assert not diff.attrs["regressed"] and set(diff["status"]) <= {"ok"}


def _doc() -> dict:
    from polyaudit.report.document import build_document

    rows = [{"claim": "C4", "claim_version": 2, "test_id": "C4-alpha-depth[m:resid]", "model": "m", "site": "resid",
             "statistic": "slope", "effect": -0.5, "ci": [-0.8, -0.2], "p": 0.001, "p_adj": 0.002, "n": 4,
             "predicted": "nonzero", "verdict": "PASS", "notes": "", "details": {}, "control": None,
             "provenance": {"model": {"spec": "m", "revision": None, "sha256": "0" * 64},
                            "probe": {"name": "digits", "sha256": "ab" * 32, "n_samples": 400}}}]
    return build_document(rows, {"created": "20260101T000000Z", "seed": 0, "profile": "quick", "versions": {}})
