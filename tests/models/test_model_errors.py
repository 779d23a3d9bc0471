"""Bad model input gets ONE line that says what, why and what to do (a PolyauditError), never a
traceback from deep inside transformers, and never an unpickled checkpoint."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from polyaudit.errors import PolyauditError
from polyaudit.models.loader import load_model


def _copy(tiny_models: dict[str, Path], tmp_path: Path, family: str = "gpt2") -> Path:
    dst = tmp_path / f"copy-{family}"
    shutil.copytree(tiny_models[family], dst)
    return dst


def _one_line_error(load: Callable[[], object], *words: str) -> str:
    with pytest.raises(PolyauditError) as info:
        load()
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_unknown_spec() -> None:
    _one_line_error(lambda: load_model("not a model!"), "unknown model spec", "zoo:")


def test_hub_id_offline_and_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    for var in ("HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import by huggingface_hub
    _one_line_error(
        lambda: load_model("gpt2", hf_cache_dir=str(tmp_path)),
        "'gpt2'",
        "HF_HUB_OFFLINE",
        "local folder",
    )


def test_empty_directory(tmp_path: Path) -> None:
    _one_line_error(lambda: load_model(str(tmp_path)), "no config.json")


def test_corrupt_config(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny_models, tmp_path)
    (d / "config.json").write_text('{"model_type": "gpt2", ')
    _one_line_error(lambda: load_model(str(d)), "cannot read the config", "not a valid JSON")


def test_truncated_weights(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny_models, tmp_path)
    weights = d / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    _one_line_error(lambda: load_model(str(d)), "corrupt weights")


def test_missing_weights(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    d = _copy(tiny_models, tmp_path)
    state = load_file(str(d / "model.safetensors"))
    del state["transformer.h.0.mlp.c_fc.weight"]
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    _one_line_error(lambda: load_model(str(d)), "lacks 1 weight tensor(s)", "partly random")


def test_pickle_checkpoint_is_never_unpickled(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """Only safetensors or torch.load(weights_only=True): a plain state dict loads; a pickle that
    would run code is refused, and the code does not run."""
    from safetensors.torch import load_file

    d = _copy(tiny_models, tmp_path)
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    assert load_model(str(d)).adapter.family == "gpt2"

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (marker.touch, ())  # type: ignore[return-value]

    torch.save({**state, "extra": Payload()}, d / "pytorch_model.bin")
    _one_line_error(lambda: load_model(str(d)), "refusing to unpickle", "safetensors")
    assert not marker.exists()


def test_unimportable_factory() -> None:
    _one_line_error(
        lambda: load_model("polyaudit_no_such_module.models:make"),
        "polyaudit_no_such_module.models",
        "ModuleNotFoundError",
    )


def test_factory_returning_something_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "polyaudit_bad_factory.py").write_text(
        "import torch\n"
        "def number():\n    return 3\n"
        "def conv():\n    return torch.nn.Conv2d(1, 1, 3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _one_line_error(lambda: load_model("polyaudit_bad_factory:number"), "not a torch.nn.Module")
    _one_line_error(
        lambda: load_model("polyaudit_bad_factory:conv"), "no adapter knows a Conv2d", "gpt2"
    )
    _one_line_error(
        lambda: load_model("polyaudit_bad_factory:missing"), "has no callable 'missing'"
    )


def test_unknown_device() -> None:
    _one_line_error(
        lambda: load_model("zoo:mlp-digits", device="tpu"),
        "unknown device 'tpu': use cpu, cuda or auto",
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable() -> None:
    _one_line_error(lambda: load_model("zoo:mlp-digits", device="cuda"), "no CUDA device", "cpu")


def test_unknown_dtype() -> None:
    _one_line_error(lambda: load_model("zoo:mlp-digits", dtype="float8"), "unknown dtype")


def test_unknown_architecture(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import transformers as tf

    d = tmp_path / "t5"
    config = tf.T5Config(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    tf.T5ForConditionalGeneration(config).save_pretrained(d, safe_serialization=True)
    tf.AutoTokenizer.from_pretrained(tiny_models["gpt2"]).save_pretrained(d)
    _one_line_error(lambda: load_model(str(d)), "unknown architecture t5", "gpt2", "llama", "bert")


def test_unknown_model_type(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny_models, tmp_path)
    text = (
        (d / "config.json").read_text().replace('"model_type": "gpt2"', '"model_type": "gpt9000"')
    )
    (d / "config.json").write_text(text)
    _one_line_error(lambda: load_model(str(d)), "cannot read the config", "gpt9000")


def test_revision_for_zoo() -> None:
    _one_line_error(lambda: load_model("zoo:mlp-digits", revision="main"), "--revision")
