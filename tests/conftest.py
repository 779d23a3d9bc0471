"""Shared fixtures for polyaudit's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the activation/zoo cache of the test suite away from the user's cache, shared by the
    whole session (and by pytester subprocesses, which inherit the environment)."""
    if "POLYAUDIT_CACHE" not in os.environ:
        os.environ["POLYAUDIT_CACHE"] = str(tmp_path_factory.mktemp("polyaudit-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random checkpoint of every architecture family, saved with save_pretrained together
    with a tokenizer trained locally on the built-in corpus: family -> directory."""
    from fixtures.tiny_models import FAMILIES, build_tiny

    root = tmp_path_factory.mktemp("tiny-models")
    return {fam: build_tiny(fam, root / fam) for fam in FAMILIES}


@pytest.fixture(scope="session")
def tiny_headless_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same tiny checkpoints saved without their heads (`AutoModel`: hidden states only)."""
    from fixtures.tiny_models import FAMILIES, build_tiny

    root = tmp_path_factory.mktemp("tiny-headless")
    return {fam: build_tiny(fam, root / fam, head=False) for fam in FAMILIES}


@pytest.fixture(scope="session")
def tiny_sentence_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sentence-transformers folder: the headless tiny BERT at its root, mean pooling
    (1_Pooling/config.json), then Normalize (modules.json)."""
    from fixtures.tiny_models import build_tiny_sentence

    return build_tiny_sentence(tmp_path_factory.mktemp("tiny-sentence") / "st-bert")
