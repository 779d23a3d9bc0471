"""Every claim on tiny checkpoints saved without their heads (`AutoModel`) and on a tiny
sentence-transformers folder, loaded the way a user's `--model=./dir` is: a row for every collected
test, no ERROR and no traceback; C2, C3 and the single-checkpoint C5 give verdicts, measured on the
model's own representation (cosine) where no head could be loaded, and on the pooled sentence
embedding where the folder names its pooling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEASURED = {"PASS", "FAIL", "INCONCLUSIVE"}


@pytest.mark.slow
def test_every_claim_on_headless_checkpoints(pytester: pytest.Pytester, tiny_headless_models: dict[str, Path],
                                             tiny_sentence_model: Path) -> None:
    shutil.copytree(ROOT / "claims", pytester.path / "claims")
    models = {f"{f}-headless": p for f, p in tiny_headless_models.items()} | {"st-bert": tiny_sentence_model}
    for name, path in models.items():
        shutil.copytree(path, pytester.path / name)
    out = pytester.path / "audit.json"
    result = pytester.runpytest_subprocess("claims", *(f"--model={pytester.path / n}" for n in models),
                                           "--profile=quick", "--control=none", f"--json={out}", "--no-reports",
                                           "-p", "no:cacheprovider")
    text = result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), text[-3000:]
    assert "Traceback" not in text
    outcomes = result.parseoutcomes()
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    collected = sum(outcomes.get(k, 0) for k in ("passed", "failed", "skipped", "inconclusive", "error", "errors"))
    assert len(rows) >= collected > 0
    assert {r["model"] for r in rows} == set(models)
    for r in rows:
        assert r["verdict"] != "ERROR", (r["model"], r["test_id"], r["notes"])
    heads = {m["id"]: m for m in doc["models"]}
    for name in models:
        mine = [r for r in rows if r["model"] == name]
        single = [r for r in mine if r["test_id"].startswith("C5-unit-dropout")]
        boundary = [r for r in mine if r["claim"] in ("C2", "C3") and r["site"].startswith("blocks.0.resid")]
        assert single and boundary, name
        for r in [*single, *boundary]:
            assert r["verdict"] in MEASURED, (name, r["test_id"], r["verdict"], r["notes"])
    bare = [r for r in rows if r["model"] in ("bert-headless", "st-bert") and r["verdict"] in MEASURED
            and (r["claim"] in ("C2", "C3") or r["test_id"].startswith("C5-unit-dropout"))]
    assert bare and all("cosine" in r["notes"] for r in bare)
    pooled = [r for r in bare if r["model"] == "st-bert"]
    assert pooled
    for r in pooled:
        assert "mean pooling" in r["notes"], (r["test_id"], r["notes"])
    assert "mean" in json.dumps(heads["st-bert"].get("pooling"))
