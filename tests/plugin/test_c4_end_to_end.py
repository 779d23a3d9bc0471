"""C4 end to end through `--model`: every architecture family's tiny checkpoint (float32, float16,
bfloat16), the zoo default, determinism, the cache, and an architecture no adapter knows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
C4 = ROOT / "claims" / "test_c4_alpha_depth.py"
ALLOWED = {"PASS", "FAIL", "INCONCLUSIVE", "SKIPPED"}


@pytest.fixture
def c4_project(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(C4, pytester.path / "test_c4_alpha_depth.py")
    return pytester


def _audit(p: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    out = p.path / f"audit-{len(list(p.path.glob('audit-*.json')))}.json"
    result = p.runpytest(*args, "--profile=quick", f"--json={out}", "--no-reports", "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    return result, json.loads(out.read_text())


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "opt", "bert"])
def test_c4_on_every_family(c4_project: pytest.Pytester, tiny_models: dict[str, Path], family: str) -> None:
    result, doc = _audit(c4_project, f"--model={tiny_models[family]}")
    rows = {r["site"]: r for r in doc["rows"]}
    assert set(rows) == {"resid", "mlp_pre"}
    for row in rows.values():
        assert row["verdict"] in ALLOWED, (row["verdict"], row["notes"])
        layers = row["details"]["layers"]
        assert len(layers) == doc["model"]["n_layers"] == 3
        assert all(-10 < layer["alpha"] < 0 for layer in layers)
        lo, hi = row["ci"]
        assert lo <= row["effect"] <= hi
        assert 0 <= row["p"] <= 1 and row["p"] <= row["p_adj"] <= 1
    assert doc["model"]["family"] == family
    assert "effect [CI]" in result.stdout.str()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_c4_on_half_precision_checkpoints(c4_project: pytest.Pytester, tmp_path: Path, dtype: str) -> None:
    from fixtures.tiny_models import build_tiny

    ckpt = build_tiny("llama", tmp_path / f"llama-{dtype}", dtype=dtype)
    _result, doc = _audit(c4_project, f"--model={ckpt}")
    assert doc["model"]["dtype"] == dtype
    assert {r["verdict"] for r in doc["rows"]} <= ALLOWED


def test_c4_on_the_default_zoo_models(c4_project: pytest.Pytester) -> None:
    _result, doc = _audit(c4_project)
    assert {r["model"] for r in doc["rows"]} == {"zoo:mlp-digits", "zoo:cnn-digits-posall"}  # an MLP and a CNN (model ids)
    assert {r["verdict"] for r in doc["rows"]} <= ALLOWED
    assert all(len(r["details"]["layers"]) == 4 for r in doc["rows"])


def test_same_seed_same_numbers_and_second_run_from_cache(c4_project: pytest.Pytester, tiny_models: dict[str, Path],
                                                          tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = (f"--model={tiny_models['gpt2']}", "--seed=3", f"--cache-dir={cache}")
    first, doc1 = _audit(c4_project, *args)
    second, doc2 = _audit(c4_project, *args)
    assert "4 claim measurement(s) computed" in first.stdout.str()
    assert "4 served from the results cache; 0 forward pass(es)" in second.stdout.str()
    numbers = [[(r["effect"], r["ci"], r["p"], r["details"]["alphas"]) for r in d["rows"]] for d in (doc1, doc2)]
    assert numbers[0] == numbers[1]
    # Same seed without any cache: identical numbers again (determinism, not just caching).
    _third, doc3 = _audit(c4_project, *args[:2], "--no-cache")
    assert [[(r["effect"], r["ci"], r["p"]) for r in doc3["rows"]]] == [[n[:3] for n in numbers[0]]]


def test_unknown_architecture_is_one_line(c4_project: pytest.Pytester, tiny_models: dict[str, Path]) -> None:
    import transformers as tf

    d = c4_project.path / "t5-ckpt"
    tf.T5ForConditionalGeneration(tf.T5Config(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                              num_heads=4)).save_pretrained(d)
    result = c4_project.runpytest(f"--model={d}", "--no-reports")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [ln for ln in result.stderr.lines if ln.startswith("ERROR:")]
    assert len(lines) == 1 and "t5" in lines[0].lower(), result.stderr.lines
    assert "Traceback" not in result.stderr.str()
