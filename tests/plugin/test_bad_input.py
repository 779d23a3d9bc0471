"""Bad input: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

C4 = "claims/test_c4_alpha_depth.py"


def _assert_one_line(result: pytest.RunResult, needle: str) -> None:
    assert result.ret != 0
    err = result.stderr.str() + result.stdout.str()
    assert "Traceback" not in err
    lines = [ln for ln in result.stderr.lines if ln.startswith("ERROR:")]
    assert len(lines) == 1, result.stderr.lines
    assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture
def claim_project(project: pytest.Pytester, fake_claim: str) -> pytest.Pytester:
    project.makepyfile(test_fake_claim=fake_claim)
    return project


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model=not a model!"], "not a model!"),
        (["--model=zoo:no-such-model"], "no-such-model"),
        (["--model=factory_mod_missing:make"], "factory_mod_missing"),
        (["--model=factory_mod:make", "--device=tpu"], "tpu"),
        (["--model=factory_mod:make", "--profile=huge"], "huge"),
        (["--model=factory_mod:make", "--seed=abc"], "seed"),
        (["--model=factory_mod:make", "--dtype=int3"], "int3"),
    ],
)
def test_bad_options(claim_project: pytest.Pytester, args: list[str], needle: str) -> None:
    _assert_one_line(claim_project.runpytest(*args, "--no-reports"), needle)


def test_offline_hub_id(claim_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = claim_project.mkdir("hf-empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(empty))
    monkeypatch.setenv("HF_HUB_CACHE", str(empty / "hub"))
    _assert_one_line(claim_project.runpytest("--model=gpt2", "--no-reports"), "gpt2")


def test_empty_directory(claim_project: pytest.Pytester) -> None:
    d = claim_project.mkdir("empty-ckpt")
    _assert_one_line(claim_project.runpytest(f"--model={d}", "--no-reports"), "empty-ckpt")


def test_corrupt_config(claim_project: pytest.Pytester, tiny_models: dict) -> None:
    d = claim_project.path / "bad-config"
    shutil.copytree(tiny_models["gpt2"], d)
    (d / "config.json").write_text("{ not json")
    _assert_one_line(claim_project.runpytest(f"--model={d}", "--no-reports"), "config")


def test_corrupt_weights(claim_project: pytest.Pytester, tiny_models: dict) -> None:
    d = claim_project.path / "bad-weights"
    shutil.copytree(tiny_models["gpt2"], d)
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    _assert_one_line(claim_project.runpytest(f"--model={d}", "--no-reports"), "bad-weights")


def test_probe_too_small(claim_project: pytest.Pytester, tiny_models: dict) -> None:
    tiny_text = claim_project.path / "tiny.txt"
    tiny_text.write_text("A few words only.")
    shutil.copy(Path(__file__).parents[2] / C4, claim_project.path / "test_c4.py")
    result = claim_project.runpytest(f"--model={tiny_models['gpt2']}", f"--probe=text:{tiny_text}", "--no-reports")
    _assert_one_line(result, "tiny.txt")
