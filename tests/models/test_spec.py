"""parse_spec: which kind of model a `--model` string names, and one-line errors for the rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyaudit.errors import PolyauditError
from polyaudit.models.spec import ModelSpec, parse_spec


@pytest.mark.parametrize(
    ("spec", "kind", "target"),
    [
        ("gpt2", "hub", "gpt2"),
        ("gpt2-medium", "hub", "gpt2-medium"),
        ("EleutherAI/pythia-70m", "hub", "EleutherAI/pythia-70m"),
        ("facebook/opt-125m", "hub", "facebook/opt-125m"),
        ("Qwen/Qwen2.5-0.5B", "hub", "Qwen/Qwen2.5-0.5B"),
        ("zoo:mlp-digits", "zoo", "mlp-digits"),
        ("mypkg.models:make_net", "factory", "mypkg.models:make_net"),
        ("mymodule:build", "factory", "mymodule:build"),
    ],
)
def test_kinds(spec: str, kind: str, target: str) -> None:
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.target) == (kind, target)


def test_zoo_params() -> None:
    assert parse_spec("zoo:mlp-digits?dropout=0.4&seed=1") == ModelSpec(
        "zoo", "mlp-digits", {"dropout": "0.4", "seed": "1"}
    )


@pytest.mark.parametrize(
    "spec",
    [
        "zoo:mlp-digits?dropout",
        "zoo:mlp-digits?=1",
        "zoo:",
        "zoo:Bad Name",
        "zoo:mlp-digits?seed=1&seed=2",
    ],
)
def test_bad_zoo_specs(spec: str) -> None:
    with pytest.raises(PolyauditError) as info:
        parse_spec(spec)
    assert "\n" not in str(info.value)


def test_local_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "gpt2").mkdir()  # an existing folder wins over the hub id of the same name
    monkeypatch.chdir(tmp_path)
    for spec in ("./ckpt", "ckpt", "gpt2", str(tmp_path / "ckpt"), "../" + tmp_path.name + "/ckpt"):
        parsed = parse_spec(spec)
        assert parsed.kind == "local", spec
        assert os.path.isabs(parsed.target) and os.path.isdir(parsed.target)


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    assert parse_spec("~/m") == ModelSpec("local", str(tmp_path / "m"))


def test_existing_path_is_not_a_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a:b").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse_spec("a:b").kind == "local"


@pytest.mark.parametrize("spec", ["./does-not-exist", "/no/such/folder", "~/no-such-polyaudit-dir"])
def test_missing_local_dir(spec: str) -> None:
    with pytest.raises(PolyauditError, match="does not exist"):
        parse_spec(spec)


def test_file_is_not_a_model_dir(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(PolyauditError, match="not a folder"):
        parse_spec(str(f))


@pytest.mark.parametrize(
    "spec", ["not a model!", "", "a/b/c", "-x", "foo..bar/..", "pkg.:f", "x:y:z"]
)
def test_unknown(spec: str) -> None:
    with pytest.raises(PolyauditError, match="unknown model spec") as info:
        parse_spec(spec)
    assert "\n" not in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_fails_in_one_line(s: str) -> None:
    try:
        parsed = parse_spec(s)
    except PolyauditError as e:
        assert "\n" not in str(e)
    else:
        assert parsed.kind in ("hub", "local", "zoo", "factory")
