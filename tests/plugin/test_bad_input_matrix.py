"""The bad-input matrix (DESIGN.md section 9): each row is a real `pytest claims/ ...` run, driven by
pytester, that must end with ONE clear line (what, why, what to do), a non-zero exit status and no
traceback. Rows that need more than a line (NaN activations, an unwritable report folder, pickled
checkpoints) have their own tests below the table.

Exit statuses: 4 is pytest's usage error (bad input refused before any claim runs); 1 means claims
ran and some failed or errored (an ERROR row is a measurement that could not be made).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

USAGE = int(pytest.ExitCode.USAGE_ERROR)  # 4
C4 = Path(__file__).parents[2] / "claims" / "test_c4_alpha_depth.py"
C2 = Path(__file__).parents[2] / "claims" / "test_c2_boundaries_semantics.py"


@dataclass
class Env:
    project: pytest.Pytester
    tiny: dict[str, Path]
    monkeypatch: pytest.MonkeyPatch

    def copy(self, family: str, name: str) -> Path:
        dst = self.project.path / name
        shutil.copytree(self.tiny[family], dst)
        return dst


def _error_lines(result: pytest.RunResult) -> list[str]:
    return [ln for ln in result.stderr.lines if ln.startswith("ERROR:")]


def _assert_refused(result: pytest.RunResult, needle: str, code: int = USAGE) -> str:
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out, out[-3000:]
    assert result.ret == code, out[-3000:]
    lines = _error_lines(result)
    assert len(lines) == 1, result.stderr.lines
    assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


# --- the table -------------------------------------------------------------------------------
def _offline(env: Env) -> list[str]:
    from huggingface_hub import constants

    empty = env.project.mkdir("hf-empty")
    for var in ("HF_HOME", "HF_HUB_CACHE"):
        env.monkeypatch.setenv(var, str(empty))
    env.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env.monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once, at import
    return ["--model=gpt2"]


def _corrupt_config(env: Env) -> list[str]:
    d = env.copy("gpt2", "bad-config")
    (d / "config.json").write_text('{"model_type": "gpt2", ')
    return [f"--model={d}"]


def _truncated_weights(env: Env) -> list[str]:
    d = env.copy("gpt2", "bad-weights")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return [f"--model={d}"]


def _garbage_weights(env: Env) -> list[str]:
    d = env.copy("gpt2", "garbage-weights")
    (d / "model.safetensors").write_bytes(b"\xff" * 64 + b"not a safetensors file")
    return [f"--model={d}"]


def _sentence_pipeline_without_transformer(env: Env) -> list[str]:
    d = env.copy("bert", "st-no-transformer")
    (d / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    return [f"--model={d}"]


def _unknown_architecture(env: Env) -> list[str]:
    import transformers as tf

    d = env.project.path / "t5"
    config = tf.T5Config(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    tf.T5ForConditionalGeneration(config).save_pretrained(d)
    tf.AutoTokenizer.from_pretrained(env.tiny["gpt2"]).save_pretrained(d)
    return [f"--model={d}"]


def _half_kernels_missing(env: Env) -> list[str]:
    """A torch build without half-precision CPU kernels (older torch raised exactly this)."""
    import torch.nn.functional as F

    real = F.linear

    def linear(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if x.dtype == torch.float16 and x.device.type == "cpu":
            raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'Half'")
        return real(x, *args, **kwargs)  # type: ignore[arg-type]

    env.monkeypatch.setattr(F, "linear", linear)
    return ["--model=factory_mod:make", "--dtype=float16"]


def _probe_file(name: str, data: bytes) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        path = env.project.path / name
        path.write_bytes(data)
        return [f"--model={env.tiny['gpt2']}", f"--probe=text:{path}"]

    return setup


def _probe_shorter_than_a_sequence(env: Env) -> list[str]:
    shutil.copy(C4, env.project.path / "test_c4.py")
    return _probe_file("tiny.txt", b"A few words only.")(env)


def _probe_too_small(env: Env) -> list[str]:
    """One sequence of text: fewer kept samples than C4 needs (c4.MIN_SAMPLES)."""
    from transformers import AutoTokenizer

    from polyaudit.probes.text import stdlib_text

    shutil.copy(C4, env.project.path / "test_c4.py")
    tokenizer = AutoTokenizer.from_pretrained(env.tiny["gpt2"])
    words = stdlib_text().split()
    n = 1
    while len(tokenizer(" ".join(words[:n]))["input_ids"]) < 150:  # one 128-token sequence, not two
        n += 10
    return _probe_file("short.txt", " ".join(words[:n]).encode())(env)


def _little_memory(env: Env, free: int) -> None:
    import polyaudit.models.memory

    env.monkeypatch.setattr(polyaudit.models.memory, "available_bytes", lambda device: free)


def _weights_do_not_fit(env: Env) -> list[str]:
    _little_memory(env, 50_000)  # the tiny GPT-2 has ~0.3 MB of weights
    return [f"--model={env.tiny['gpt2']}"]


def _capture_does_not_fit(env: Env) -> list[str]:
    _little_memory(env, 50_000)  # 400 samples x 3 layers x 32 floats, twice: ~0.3 MB
    return ["--model=factory_mod:make"]


def _saved_baseline(env: Env, name: str) -> Path:
    path = env.project.path / name
    result = env.project.runpytest("--model=factory_mod:make", "--no-reports", f"--save-baseline={path}")
    assert result.ret == 1 and path.is_file(), result.stdout.str()[-2000:]  # the fake claim fails rows
    return path


def _baseline_other_version(env: Env) -> list[str]:
    from polyaudit.report.document import dumps
    from polyaudit.report.load import sign

    path = _saved_baseline(env, "v1.json")
    doc = json.loads(path.read_text())
    for row in doc["rows"]:
        row["claim_version"] = 1  # the fake claim is version 2
    path.write_text(dumps(sign(doc)))
    return ["--model=factory_mod:make", f"--baseline={path}"]


def _baseline_truncated(env: Env) -> list[str]:
    path = _saved_baseline(env, "cut.json")
    path.write_text(path.read_text()[:300])
    return ["--model=factory_mod:make", f"--baseline={path}"]


def _remote_code(env: Env) -> list[str]:
    d = env.copy("gpt2", "remote-code")
    config = json.loads((d / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig",
                                               "AutoModelForCausalLM": "evil.EvilModel"})
    (d / "config.json").write_text(json.dumps(config))
    marker = env.project.path / "REMOTE-CODE-RAN"
    (d / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return [f"--model={d}"]


def _pickle_only(env: Env) -> list[str]:
    d = env.copy("gpt2", "pickled")
    _plant_malicious_bin(d, env.project.path / "PICKLE-RAN")
    (d / "model.safetensors").unlink()
    return [f"--model={d}"]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Env], list[str]]
    needle: str


def _args(*args: str) -> Callable[[Env], list[str]]:
    return lambda env: list(args)


CASES = [
    Case("unknown-spec", _args("--model=not a model!"), "unknown model spec"),
    Case("missing-folder", _args("--model=./no-such-ckpt"), "does not exist"),
    Case("unknown-zoo-model", _args("--model=zoo:no-such-model"), "no-such-model"),
    Case("missing-factory", _args("--model=factory_mod_missing:make"), "cannot import module"),
    Case("offline-hub-id", _offline, "HF_HUB_OFFLINE is set"),
    Case("corrupt-config", _corrupt_config, "cannot read the config"),
    Case("truncated-weights", _truncated_weights, "corrupt weights"),
    Case("garbage-weights", _garbage_weights, "garbage-weights"),
    Case("unknown-architecture", _unknown_architecture, "unknown architecture t5"),
    Case("sentence-pipeline-without-transformer", _sentence_pipeline_without_transformer,
         "must name one Transformer module"),
    Case("unknown-device", _args("--model=factory_mod:make", "--device=tpu"), "unknown device 'tpu'"),
    Case("unknown-dtype", _args("--model=factory_mod:make", "--dtype=float8"), "unknown dtype 'float8'"),
    Case("dtype-unsupported-on-device", _half_kernels_missing, "dtype float16 is not supported on cpu"),
    Case("probe-needs-tokenizer", _args("--model=factory_mod:make", "--probe=text:nope.txt"), "needs a model with a tokenizer"),
    Case("probe-file-missing", lambda env: [f"--model={env.tiny['gpt2']}", "--probe=text:nope.txt"], "does not exist"),
    Case("probe-empty", _probe_file("empty.txt", b"  \n\n"), "is empty"),
    Case("probe-binary", _probe_file("blob.bin", bytes(range(256)) * 8), "looks binary"),
    Case("probe-not-utf8", _probe_file("latin1.txt", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e. ".encode("latin-1") * 50),
         "not valid UTF-8"),
    Case("probe-shorter-than-a-sequence", _probe_shorter_than_a_sequence, "fewer than one sequence"),
    Case("probe-too-small-for-the-sample-size", _probe_too_small, "the profile needs at least 50"),
    Case("weights-do-not-fit", _weights_do_not_fit, "M parameters as stored, but only 48.8 KiB is free on the host"),
    Case("capture-does-not-fit", _capture_does_not_fit, "(activations 300.0 KiB for 400 samples x 96 values, forward 4.0 KiB) but only 48.8 KiB is free"),
    Case("baseline-other-claim-version", _baseline_other_version, "measured C9 version 1, this run has version 2"),
    Case("baseline-missing", _args("--model=factory_mod:make", "--baseline=nope.json"), "does not exist"),
    Case("baseline-truncated", _baseline_truncated, "not valid JSON"),
    Case("remote-code-without-flag", _remote_code, "--trust-remote-code"),
    Case("pickle-with-code", _pickle_only, "refusing to unpickle"),
    Case("bad-cache-cap", _args("--model=factory_mod:make", "--cache-max-gb=lots"), "--cache-max-gb 'lots' is not a number"),
    Case("bad-seed", _args("--model=factory_mod:make", "--seed=abc"), "--seed must be an integer"),
    Case("unknown-profile", _args("--model=factory_mod:make", "--profile=huge"), "huge"),
]
if not torch.cuda.is_available():
    CASES.append(Case("cuda-absent", _args("--model=factory_mod:make", "--device=cuda"), "no CUDA device"))


@pytest.fixture
def env(project: pytest.Pytester, fake_claim: str, tiny_models: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> Env:
    project.makepyfile(test_fake_claim=fake_claim)
    return Env(project, tiny_models, monkeypatch)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line(env: Env, case: Case) -> None:
    args = case.setup(env)
    line = _assert_refused(env.project.runpytest(*args, "--no-reports"), case.needle)
    assert ": " in line  # what, then why / what to do
    for marker in ("REMOTE-CODE-RAN", "PICKLE-RAN"):
        assert not (env.project.path / marker).exists(), f"{marker}: untrusted code ran"


def test_the_matrix_covers_design_section_9() -> None:
    """Every kind of bad input DESIGN.md section 9 and issue 7 name has a row (or a test below)."""
    ids = {c.id for c in CASES}
    for needed in ("unknown-spec", "missing-folder", "offline-hub-id", "corrupt-config", "truncated-weights",
                   "unknown-architecture", "unknown-device", "dtype-unsupported-on-device", "probe-empty",
                   "probe-binary", "probe-not-utf8", "probe-too-small-for-the-sample-size", "weights-do-not-fit",
                   "capture-does-not-fit", "baseline-other-claim-version"):
        assert needed in ids


# --- NaN / inf activations: ERROR rows with the site and the count ---------------------------
NAN_FACTORY = '''
import math
import torch

def _make(bad):
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.zero_()
        net[2].bias[5] = bad  # unit 5 of layer 1's pre-activation, for every input
    x = torch.randn(600, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return net, (x, y)

def make_nan():
    return _make(math.nan)

def make_inf():
    return _make(math.inf)
'''


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_nonfinite_activations_are_error_rows(project: pytest.Pytester, kind: str) -> None:
    project.makepyfile(nan_factory=NAN_FACTORY)
    shutil.copy(C4, project.path / "test_c4.py")
    shutil.copy(C2, project.path / "test_c2.py")
    out = project.path / "run.json"
    result = project.runpytest(f"--model=nan_factory:make_{kind}", "--profile=quick", "--no-cache",
                               "--no-reports", f"--json={out}")
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and result.ret == 1, text[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows and {r["claim"] for r in rows} == {"C2", "C4"}
    assert all(r["verdict"] == "ERROR" for r in rows), [(r["test_id"], r["verdict"]) for r in rows]
    assert len({r["test_id"] for r in rows}) == len(rows)  # one row per test id, none merged
    assert sum(r["claim"] == "C2" for r in rows) >= 3 and sum(r["claim"] == "C4" for r in rows) == 2
    for r in rows:  # the reason names where and how many: layer 1 holds 600 bad values (one unit)
        assert "600 NaN/inf values" in r["notes"], r["notes"]
        assert "layer 1" in r["notes"] or "blocks.1.mlp.pre" in r["notes"], r["notes"]
        assert not math.isfinite(r["effect"] if r["effect"] is not None else math.nan)
    assert "ERROR" in text and "polyaudit verdicts" in text


# --- unwritable report folder --------------------------------------------------------------
def test_unwritable_report_folder_still_prints_the_table(project: pytest.Pytester, fake_claim: str) -> None:
    """The table is printed, the exit status is the audit's own, and ONE line says where nothing was
    written. (Tests run as root here, so the folder is made unwritable by a file in its way.)"""
    project.makepyfile(test_fake_claim=fake_claim)
    blocker = project.path / "blocker"
    blocker.write_text("a file where the report folder should be")
    result = project.runpytest("--model=factory_mod:make", f"--report-dir={blocker}/reports",
                               f"--json={blocker}/run.json")
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text
    assert result.ret == 1  # the fake claim's FAIL and ERROR rows: the audit's own status
    assert "polyaudit verdicts" in text and "C9" in text
    lines = [ln for ln in result.stdout.lines if "nothing written to" in ln]
    assert len(lines) == 1, lines
    assert f"{blocker}/run.json" in lines[0] and f"{blocker}/reports" in lines[0]
    assert not [ln for ln in result.stdout.lines if ln.startswith("polyaudit report written:")]
    assert blocker.read_text() == "a file where the report folder should be"


def test_a_failed_run_never_truncates_an_old_report(project: pytest.Pytester, fake_claim: str) -> None:
    project.makepyfile(test_fake_claim=fake_claim)
    old = project.path / "old.json"
    old.write_text('{"an": "old report"}')
    result = project.runpytest("--model=zoo:no-such-model", f"--json={old}")
    assert result.ret == USAGE
    assert old.read_text() == '{"an": "old report"}'


# --- untrusted pickles -----------------------------------------------------------------------
def _plant_malicious_bin(folder: Path, marker: Path) -> None:
    """A pytorch_model.bin whose unpickling would run code that creates `marker`."""
    from safetensors.torch import load_file

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    state: dict[str, object] = dict(load_file(str(folder / "model.safetensors")))
    state["lm_head.bias"] = Payload()
    torch.save(state, folder / "pytorch_model.bin")


def test_planted_pickle_is_never_executed(env: Env) -> None:
    """Only pickle weights, one of them a payload: refused in one line through `--model=./dir`, and
    the payload never runs. Next to safetensors weights the pickle is never even opened."""
    marker = env.project.path / "PICKLE-RAN"
    d = env.copy("gpt2", "pickled")
    _plant_malicious_bin(d, marker)
    with_safetensors = env.project.runpytest(f"--model={d}", "--no-reports")
    assert with_safetensors.ret == 1 and "polyaudit verdicts" in with_safetensors.stdout.str()
    assert not marker.exists()
    (d / "model.safetensors").unlink()
    line = _assert_refused(env.project.runpytest(f"--model={d}", "--no-reports"), "refusing to unpickle")
    assert "weights_only=True" in line and "safetensors" in line
    assert not marker.exists()


def test_benign_pickle_loads_with_weights_only(env: Env) -> None:
    """A plain state dict in pytorch_model.bin loads through torch.load(weights_only=True)."""
    from safetensors.torch import load_file

    d = env.copy("gpt2", "benign-pickle")
    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    result = env.project.runpytest(f"--model={d}", "--no-reports")
    assert result.ret == 1 and "Traceback" not in result.stdout.str()  # the fake claim's FAIL rows
    assert "polyaudit verdicts" in result.stdout.str() and "benign-pickle" in result.stdout.str()


def test_remote_code_runs_only_with_the_flag(env: Env) -> None:
    """Without --trust-remote-code the model's own code is refused and never imported."""
    args = _remote_code(env)
    _assert_refused(env.project.runpytest(*args, "--no-reports"), "--trust-remote-code")
    assert not (env.project.path / "REMOTE-CODE-RAN").exists()
