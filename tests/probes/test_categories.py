"""labelled:categories: the shipped word lists, balanced sentences, and the kept word-final token."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
import pytest

from polyaudit.probes.categories import SLOT, categories_probe, load_categories
from polyaudit.probes.text import stdlib_text
from polyaudit.profiles import PROFILES, Profile

QUICK = PROFILES["quick"]
SMALL = Profile(
    name="t",
    n_seq=4,
    seq_len=32,
    k_per_seq=4,
    skip=2,
    max_samples=160,
    n_boot=10,
    n_perm=10,
    batch_size=4,
)


def _bpe(pad: bool, eos: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([stdlib_text()[:60_000]], trainer=trainer)
    kw = {"pad_token": "<pad>"} if pad else {}
    if eos:
        kw["eos_token"] = "</s>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kw)


def _wordpiece() -> Any:
    """A BERT-style tokenizer: [CLS] ... [SEP] around every sentence, ## continuation pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=600,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
        initial_alphabet=list(string.ascii_letters),
        show_progress=False,
    )
    tok.train_from_iterator([stdlib_text()[:60_000]], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


@pytest.fixture(scope="module")
def bpe() -> Any:
    return _bpe(pad=True, eos=True)


def _words(probe: Any) -> list[str]:
    """The labelled word of each sentence, recovered from the sentence and its template."""
    _, templates = load_categories()
    out = []
    for s in probe.meta["sentences"]:
        for t in templates:
            head, tail = t.split(SLOT)
            if s.startswith(head) and s.endswith(tail) and len(s) > len(head) + len(tail):
                out.append(s[len(head) : len(s) - len(tail)])
                break
    assert len(out) == len(probe.meta["sentences"])
    return out


def test_word_lists() -> None:
    cats, templates = load_categories()
    assert len(cats) >= 10 and all(len(w) >= 12 for w in cats.values())
    assert len(templates) >= 8 and all(t.count(SLOT) == 1 for t in templates)
    words = [w for ws in cats.values() for w in ws]
    assert all(w.isalpha() for w in words)  # single words
    assert len({w.lower() for w in words}) == len(words)  # no word in two categories
    assert all(t.split(SLOT)[1].startswith(" ") for t in templates)  # the word ends at a space


def test_kept_token_ends_the_word(bpe: Any) -> None:
    probe = categories_probe(bpe, QUICK, seed=0)
    cats, _ = load_categories()
    assert probe.label_names == tuple(cats)
    ids = probe.inputs.numpy()
    for (i, pos), word, label in zip(probe.positions, _words(probe), probe.labels, strict=True):
        assert word in cats[probe.label_names[label]]
        # the word is complete at the kept token, the token is part of it, the next one is not
        assert bpe.decode(ids[i, : pos + 1].tolist()).endswith(word)
        assert bpe.decode(ids[i, pos : pos + 1].tolist()).strip()
        assert bpe.decode(ids[i, pos + 1 : pos + 2].tolist()).startswith(" ")


def test_balanced_labels(bpe: Any) -> None:
    cats, templates = load_categories()
    probe = categories_probe(bpe, QUICK, seed=0)
    counts = np.bincount(probe.labels, minlength=len(cats))
    assert np.all(counts == counts[0]) and counts.sum() == probe.n_samples
    assert probe.n_samples == QUICK.max_samples // len(cats) * len(cats)
    assert sorted(probe.meta["words"]) == sorted(cats)
    # A large budget takes every combination the smallest category allows, still balanced.
    big = categories_probe(bpe, PROFILES["paper"], seed=0)
    per = min(len(w) for w in cats.values()) * len(templates)
    assert np.all(np.bincount(big.labels) == per)
    assert len(set(big.meta["sentences"])) == big.n_samples


def test_padding_and_mask(bpe: Any) -> None:
    probe = categories_probe(bpe, SMALL, seed=1)
    ids, mask = probe.inputs.numpy(), probe.attention_mask.numpy()
    lengths = mask.sum(1)
    for row, m, n in zip(ids, mask, lengths, strict=True):
        assert np.all(m[:n] == 1) and np.all(m[n:] == 0)  # right padding
        assert np.all(row[n:] == bpe.pad_token_id)
    assert np.all(probe.positions[:, 1] < lengths)
    assert np.array_equal(probe.positions[:, 0], np.arange(probe.n_samples))  # one sentence per sample


def test_groups_are_the_words(bpe: Any) -> None:
    """The unit of replication is the word: samples share a group exactly when they share the word
    (and so the label); capture hands these groups to the claims (resampling by word)."""
    probe = categories_probe(bpe, QUICK, seed=0)
    words = _words(probe)
    groups = probe.groups
    assert groups.shape == (probe.n_samples,) and groups.dtype == np.int64
    first = {}
    for g, w, label in zip(groups, words, probe.labels, strict=True):
        assert first.setdefault(int(g), (w, int(label))) == (w, int(label))
    assert len(first) == len(set(words)) == probe.meta["n_words"] < probe.n_samples


@pytest.mark.parametrize(("pad", "eos", "expect"), [(False, True, "eos"), (False, False, 0)])
def test_tokenizer_without_pad_token(pad: bool, eos: bool, expect: str | int) -> None:
    tok = _bpe(pad=pad, eos=eos)
    probe = categories_probe(tok, SMALL, seed=0)
    fill = tok.eos_token_id if expect == "eos" else expect
    ids, mask = probe.inputs.numpy(), probe.attention_mask.numpy()
    assert np.any(mask == 0) and np.all(ids[mask == 0] == fill)


def test_wordpiece_with_special_tokens() -> None:
    tok = _wordpiece()
    probe = categories_probe(tok, SMALL, seed=0)
    ids = probe.inputs.numpy()
    assert np.all(ids[:, 0] == tok.cls_token_id)
    for (i, pos), word in zip(probe.positions, _words(probe), strict=True):
        piece = tok.convert_ids_to_tokens(int(ids[i, pos]))
        nxt = tok.convert_ids_to_tokens(int(ids[i, pos + 1]))
        assert piece not in tok.all_special_tokens
        assert word.endswith(piece.removeprefix("##")) and not nxt.startswith("##")


def test_seeded(bpe: Any) -> None:
    a, b, c = (categories_probe(bpe, SMALL, seed=s) for s in (5, 5, 6))
    assert a.digest == b.digest and a.digest != c.digest


def test_optional_tiny_model_tokenizers(tmp_path: Any) -> None:
    """When fixtures/tiny_models.py is present, its tokenizer must work too."""
    tiny = pytest.importorskip("fixtures.tiny_models")
    if not hasattr(tiny, "train_tokenizer"):
        pytest.skip("fixtures.tiny_models has no train_tokenizer")
    tok = tiny.train_tokenizer(tmp_path / "tok")
    probe = categories_probe(tok, SMALL, seed=0)
    ids = probe.inputs.numpy()
    for (i, pos), word in zip(probe.positions, _words(probe), strict=True):
        assert tok.decode(ids[i, : pos + 1].tolist(), skip_special_tokens=True).endswith(word)
