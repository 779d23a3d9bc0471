"""--control=init and --control=shuffle on a tiny checkpoint of every family, saved with its head and
without it (`AutoModel`), loaded the way a user's `--model=./dir` is: every row reports its twin
(kind, how it was made, its own effect and verdict) or says why the twin could not be measured.

The claims run are the ones that read every layer and (C5 single) score the model's output: C4's
spectra and the single-checkpoint C5's unit dropout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEASURED = {"PASS", "FAIL", "INCONCLUSIVE"}


@pytest.fixture
def two_claims(pytester: pytest.Pytester) -> pytest.Pytester:
    for name in ("test_c4_alpha_depth.py", "test_c5_unit_dropout.py"):
        shutil.copy(ROOT / "claims" / name, pytester.path / name)
    return pytester


def test_two_models_with_one_id_are_refused(two_claims: pytest.Pytester, tiny_models: dict[str, Path],
                                            tiny_headless_models: dict[str, Path]) -> None:
    result = two_claims.runpytest(f"--model={tiny_models['gpt2']}", f"--model={tiny_headless_models['gpt2']}",
                                  "--no-reports", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*both have the id 'gpt2'*separate runs*"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["init", "shuffle"])
def test_every_family_with_and_without_its_head(two_claims: pytest.Pytester, tiny_models: dict[str, Path],
                                                 tiny_headless_models: dict[str, Path], kind: str) -> None:
    models = {}
    for family, path in [*tiny_models.items(), *((f"{f}-headless", p) for f, p in tiny_headless_models.items())]:
        models[family] = two_claims.path / family  # distinct folder names: the model ids of the rows
        shutil.copytree(path, models[family])
    out = two_claims.path / "audit.json"
    result = two_claims.runpytest_subprocess(*(f"--model={p}" for p in models.values()), "--profile=quick",
                                             f"--control={kind}", f"--json={out}", "--no-reports",
                                             "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()[-3000:]
    doc = json.loads(out.read_text())
    assert doc["control"] == kind
    rows = doc["rows"]
    assert {r["model"] for r in rows} == set(models)
    for r in rows:
        where = (r["model"], r["test_id"], r["verdict"], r["notes"])
        assert r["verdict"] != "ERROR", where
        assert r["verdict"] != "SKIPPED", where  # headless models are scored on their own representation
        twin = r["control"]
        assert twin["kind"] == kind and twin["how"] and twin["sha256"], where
        assert twin["verdict"] in MEASURED | {"ERROR"}, where
        if twin["verdict"] in MEASURED and r["vs_control"] is not None:
            lo, hi = r["vs_control"]["ci"]
            assert lo <= r["vs_control"]["effect"] <= hi, where
        assert r["origin"] in ("learned", "architectural", "absent") or twin["verdict"] == "ERROR", where
    bare = [r for r in rows if r["model"] == "bert-headless" and r["claim"] == "C5"]
    assert bare and all("cosine" in r["notes"] for r in bare)  # a bare encoder: its representation's change
