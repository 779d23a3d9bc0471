"""Text probes: paper-style token sampling, the stdlib corpus, text files, and the probe registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter, LoadedModel
from polyaudit.probes.registry import build_probe
from polyaudit.probes.text import (
    read_text_file,
    sample_positions,
    scaled_sampling,
    stdlib_text,
    text_probe,
)
from polyaudit.profiles import PROFILES, Profile

QUICK = PROFILES["quick"]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A byte-level BPE trained inline on a slice of the stdlib corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([stdlib_text()[:120_000]], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


class _TokenAdapter(Adapter):
    family = "toy"
    input_kind = "tokens"


class _VectorAdapter(Adapter):
    family = "toy"
    input_kind = "vectors"


def _loaded(
    tokenizer: Any | None, kind: str = "tokens", max_positions: int | None = None
) -> LoadedModel:
    adapter = (_TokenAdapter if kind == "tokens" else _VectorAdapter)(nn.Identity())
    return LoadedModel(
        spec="toy",
        model=adapter.model,
        adapter=adapter,
        tokenizer=tokenizer,
        max_positions=max_positions,
        default_probe="text:stdlib",
    )


def _one_line(err: pytest.ExceptionInfo[PolyauditError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


# --- sampling --------------------------------------------------------------------------------
@given(
    st.integers(1, 5000).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n - 1)).flatmap(
            lambda ns: st.tuples(st.just(ns[0]), st.integers(0, ns[0] - ns[1]), st.just(ns[1]))
        )
    )
)
def test_sample_positions_evenly_spaced(args: tuple[int, int, int]) -> None:
    seq_len, k, skip = args
    pos = sample_positions(seq_len, k, skip)
    assert pos.shape == (k,)
    assert pos.dtype == np.int64
    if k:
        assert pos.min() >= skip and pos.max() < seq_len
        gaps = np.diff(pos)
        assert np.all(gaps > 0)  # sorted and unique
        if k > 1:
            span = seq_len - skip
            assert gaps.min() >= span // k and gaps.max() <= -(-span // k)


def test_sample_positions_paper_setting() -> None:
    pos = sample_positions(1024, 6, 100)
    assert pos.tolist() == [177, 331, 485, 639, 793, 947]  # bin midpoints, 154 apart


def test_sample_positions_too_many() -> None:
    with pytest.raises(PolyauditError) as err:
        sample_positions(10, 8, 5)
    _one_line(err)


@given(st.integers(1, 4096), st.sampled_from(sorted(PROFILES)))
def test_scaled_sampling_fits_context(seq_len: int, profile_name: str) -> None:
    profile = PROFILES[profile_name]
    k, skip = scaled_sampling(profile, seq_len)
    assert 0 <= k <= profile.k_per_seq
    assert 0 <= skip <= profile.skip
    assert k <= seq_len - skip
    if seq_len >= profile.seq_len:
        assert (k, skip) == (profile.k_per_seq, profile.skip)
    else:  # skip scales with the context
        assert skip == profile.skip * seq_len // profile.seq_len


def test_scaled_sampling_short_context() -> None:
    paper = PROFILES["paper"]
    assert scaled_sampling(paper, 1024) == (6, 100)
    assert scaled_sampling(paper, 512) == (6, 50)
    assert scaled_sampling(paper, 2048) == (6, 100)
    assert scaled_sampling(QUICK, 16) == (15, 1)


# --- stdlib corpus ---------------------------------------------------------------------------
def test_stdlib_probe_is_english(tokenizer: Any) -> None:
    probe = text_probe("text:stdlib", stdlib_text(), tokenizer, QUICK, None, seed=0)
    n, L = QUICK.n_seq, QUICK.seq_len
    assert probe.kind == "tokens" and probe.labels is None
    assert tuple(probe.inputs.shape) == (n, L) and probe.inputs.dtype == torch.int64
    assert torch.equal(probe.attention_mask, torch.ones_like(probe.inputs))
    assert probe.positions.shape == (n * QUICK.k_per_seq, 2)
    assert probe.skip == QUICK.skip and probe.positions[:, 1].min() >= QUICK.skip
    assert probe.meta["capped"] is False
    words = tokenizer.decode(probe.inputs[0].tolist()).split()
    common = {"the", "a", "of", "is", "to", "and", "in", "be"}
    assert len(words) > 10 and len(common & {w.lower() for w in words}) >= 2


def test_chunks_are_non_overlapping_slices(tokenizer: Any) -> None:
    text = stdlib_text()
    probe = text_probe("text:stdlib", text, tokenizer, QUICK, None, seed=3)
    ids = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"])
    L = QUICK.seq_len
    chunks = probe.meta["chunks"]
    assert len(set(chunks)) == len(chunks) == QUICK.n_seq
    for row, c in zip(probe.inputs.numpy(), chunks, strict=True):
        assert np.array_equal(row, ids[c * L : (c + 1) * L])


def test_seeded(tokenizer: Any) -> None:
    text = stdlib_text()
    a = text_probe("text:stdlib", text, tokenizer, QUICK, None, seed=1)
    b = text_probe("text:stdlib", text, tokenizer, QUICK, None, seed=1)
    c = text_probe("text:stdlib", text, tokenizer, QUICK, None, seed=2)
    assert a.digest == b.digest and a.digest != c.digest


def test_short_context_scales_skip(tokenizer: Any) -> None:
    probe = text_probe("text:stdlib", stdlib_text(), tokenizer, QUICK, 64, seed=0)
    k, skip = scaled_sampling(QUICK, 64)
    assert probe.inputs.shape[1] == 64 and probe.skip == skip == 6
    assert probe.positions.shape[0] == QUICK.n_seq * k


@pytest.mark.parametrize("n_seq", [QUICK.n_seq, 10 * QUICK.n_seq])
def test_kept_samples_stay_within_the_profile_budget(tokenizer: Any, n_seq: int) -> None:
    """More sequences spread the profile's sample budget over more contexts: 10x the tokens keep
    at most max_samples positions, still evenly spaced after the skip in every sequence."""
    profile = QUICK.with_overrides(n_seq=n_seq)
    probe = text_probe("text:stdlib", stdlib_text(), tokenizer, profile, None, seed=0)
    n = probe.inputs.shape[0]
    k = probe.meta["k_per_seq"]
    assert probe.positions.shape[0] == n * k <= profile.max_samples
    assert k == min(QUICK.k_per_seq, profile.max_samples // n)
    assert np.array_equal(probe.positions[:k, 1], sample_positions(profile.seq_len, k, profile.skip))


def test_capped_when_text_is_short(tokenizer: Any) -> None:
    text = stdlib_text()[:20_000]
    probe = text_probe("text:stdlib", text, tokenizer, PROFILES["paper"], 128, seed=0)
    assert probe.meta["capped"] is True
    assert 0 < probe.inputs.shape[0] < PROFILES["paper"].n_seq


def test_text_shorter_than_one_sequence(tokenizer: Any) -> None:
    with pytest.raises(PolyauditError) as err:
        text_probe("text:tiny", "Just a few words.", tokenizer, QUICK, None, seed=0)
    assert "longer text" in _one_line(err)


# --- text:FILE -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (None, "does not exist"),
        (b"", "empty"),
        (b"  \n\t\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("Caf\u00e9 cr\u00e8me au lait".encode("latin-1"), "UTF-8"),
    ],
    ids=["missing", "empty", "blank", "binary", "latin-1"],
)
def test_text_file_errors(tmp_path: Path, content: bytes | None, expect: str) -> None:
    path = tmp_path / "probe.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PolyauditError) as err:
        read_text_file(path)
    assert expect in _one_line(err)


def test_text_file_directory(tmp_path: Path) -> None:
    with pytest.raises(PolyauditError) as err:
        read_text_file(tmp_path)
    _one_line(err)


def test_text_file_probe_through_registry(tmp_path: Path, tokenizer: Any) -> None:
    path = tmp_path / "essay.txt"
    path.write_text(stdlib_text()[:60_000], encoding="utf-8")
    profile = Profile(
        name="t",
        n_seq=8,
        seq_len=64,
        k_per_seq=4,
        skip=8,
        max_samples=100,
        n_boot=10,
        n_perm=10,
        batch_size=4,
    )
    probe = build_probe(f"text:{path}", _loaded(tokenizer), profile, seed=0)
    assert probe.name == "text:essay.txt" and probe.n_samples == 32


# --- registry --------------------------------------------------------------------------------
def test_registry_default_and_errors(tokenizer: Any) -> None:
    loaded = _loaded(tokenizer, max_positions=64)
    probe = build_probe(None, loaded, QUICK, seed=0)
    assert probe.name == "text:stdlib" and probe.inputs.shape[1] == 64

    with pytest.raises(PolyauditError) as err:
        build_probe("text:stdlib", _loaded(None, kind="vectors"), QUICK, seed=0)
    assert "tokenizer" in _one_line(err)

    with pytest.raises(PolyauditError) as err:
        build_probe("wikitext", loaded, QUICK, seed=0)
    msg = _one_line(err)
    assert all(s in msg for s in ("text:stdlib", "labelled:categories", "digits"))

    with pytest.raises(PolyauditError) as err:
        build_probe("text:stdlib", loaded, QUICK, seed=0, min_samples=10**6)
    msg = _one_line(err)
    assert f"yields {probe.n_samples} samples" in msg and "at least 1000000" in msg


# --- special tokens: the model reads text as it was trained ----------------------------------
def _with_template(tokenizer: Any, single: str, specials: list[str]) -> Any:
    """A copy of `tokenizer` whose post-processor adds `specials` around each text (`single`)."""
    import copy

    from tokenizers.processors import TemplateProcessing

    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": specials})
    ids = [(s, tok.convert_tokens_to_ids(s)) for s in specials]
    tok.backend_tokenizer.post_processor = TemplateProcessing(single=single, special_tokens=ids)
    return tok


@pytest.mark.parametrize(("single", "specials", "before", "after"),
                         [("<bos> $A", ["<bos>"], 1, 0), ("[CLS] $A [SEP]", ["[CLS]", "[SEP]"], 1, 1)],
                         ids=["bos-decoder", "cls-sep-encoder"])
def test_sequences_carry_the_special_tokens_and_samples_avoid_them(tokenizer: Any, single: str,
                                                                   specials: list[str], before: int,
                                                                   after: int) -> None:
    from polyaudit.probes.text import special_tokens, text_probe

    tok = _with_template(tokenizer, single, specials)
    prefix, suffix = special_tokens(tok)
    assert (len(prefix), len(suffix)) == (before, after)
    probe = text_probe("text:stdlib", stdlib_text(), tok, QUICK, None, seed=0)
    ids = probe.inputs.numpy()
    assert ids.shape[1] == QUICK.seq_len  # the special tokens fit inside the profile's length
    assert (ids[:, :before] == prefix).all() and (ids[:, ids.shape[1] - after:] == suffix).all()
    pos = probe.positions[:, 1]
    assert pos.min() >= before + probe.skip and pos.max() < ids.shape[1] - after
    special_ids = set(prefix) | set(suffix)
    assert not special_ids & set(ids[probe.positions[:, 0], pos].tolist())
    assert "special tokens" in probe.describe()["tokenization"]


def test_a_tokenizer_without_special_tokens_reads_plain_chunks(tokenizer: Any) -> None:
    from polyaudit.probes.text import special_tokens, text_probe

    assert special_tokens(tokenizer) == ([], [])
    probe = text_probe("text:stdlib", stdlib_text(), tokenizer, QUICK, None, seed=0)
    assert probe.describe()["tokenization"].startswith("no special tokens")
