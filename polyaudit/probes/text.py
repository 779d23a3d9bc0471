"""Text probes: real prose cut into fixed-length token sequences, sampled as in the Polytope Lens.

Black, Sharkey et al. 2022 ("Interpreting Neural Networks through the Polytope Lens", sec. 4) keep
6 evenly spaced tokens of each 1024-token sequence and skip the first 100, so that early positions
(few tokens of context, attention sinks) do not dominate the statistics. `sample_positions` does the
same for any sequence length, and `scaled_sampling` scales the skip when a model's context is
shorter than the profile's sequence length.

`text:stdlib` is CPython's own documentation (`pydoc_data.topics`): real English prose that ships
with every Python, so the default probe needs no network. `text:FILE` reads any UTF-8 text file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyaudit.errors import PolyauditError
from polyaudit.probes.base import ProbeSet
from polyaudit.profiles import Profile


def sample_positions(seq_len: int, k: int, skip: int) -> np.ndarray:
    """k evenly spaced positions in [skip, seq_len): the midpoints of k equal bins, sorted, unique.

    Consecutive positions differ by floor or ceil of (seq_len - skip) / k.
    """
    if k < 0 or skip < 0 or seq_len < 0:
        raise PolyauditError(
            f"sample_positions needs non-negative sizes, got seq_len={seq_len} k={k} skip={skip}"
        )
    span = seq_len - skip
    if k > max(span, 0):
        raise PolyauditError(
            f"cannot keep {k} distinct positions of a {seq_len}-token sequence after skipping {skip}: "
            "lower k_per_seq or skip, or use longer sequences"
        )
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    i = np.arange(k, dtype=np.int64)
    return skip + ((2 * i + 1) * span) // (2 * k)


def scaled_sampling(profile: Profile, seq_len: int) -> tuple[int, int]:
    """(k, skip) for sequences of `seq_len` tokens.

    At or above the profile's sequence length the profile's values hold. For a shorter context the
    skip scales in proportion (paper: 100 of 1024) and k is capped by the positions left.
    """
    full = seq_len >= profile.seq_len
    skip = profile.skip if full else (profile.skip * seq_len) // profile.seq_len
    k = max(0, min(profile.k_per_seq, seq_len - skip))
    return k, skip


def stdlib_text() -> str:
    """CPython's pydoc topics (the help() pages on the language), joined in sorted key order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def read_text_file(path: str | Path) -> str:
    """The contents of a UTF-8 text file; one-line PolyauditError when it cannot serve as a probe."""
    p = Path(path).expanduser()
    if not p.exists():
        raise PolyauditError(
            f"text probe file {str(p)!r} does not exist: pass an existing UTF-8 text file (--probe=text:PATH)"
        )
    if not p.is_file():
        raise PolyauditError(
            f"text probe path {str(p)!r} is not a file: pass a UTF-8 text file (--probe=text:PATH)"
        )
    data = p.read_bytes()
    if b"\x00" in data:
        raise PolyauditError(
            f"text probe file {str(p)!r} looks binary (it contains NUL bytes): pass a UTF-8 text file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolyauditError(
            f"text probe file {str(p)!r} is not valid UTF-8 (byte {e.start}): convert it to UTF-8, e.g. iconv -t utf-8"
        ) from None
    if not text.strip():
        raise PolyauditError(f"text probe file {str(p)!r} is empty: pass a file with text in it")
    return text


def _encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of the whole text, without special tokens (fast tokenizer, one call)."""
    enc = tokenizer(text, add_special_tokens=False, verbose=False)
    return list(enc["input_ids"])


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts around one text when the model reads it as it was trained
    (BOS of Llama-style decoders, [CLS] ... [SEP] of BERT-style encoders, none for GPT-2): (prefix,
    suffix) ids, found by encoding a word with and without them (whatever adds them: the tokenizer's
    post-processor or its own build method)."""
    plain = list(tokenizer("polyaudit", add_special_tokens=False, verbose=False)["input_ids"])
    full = list(tokenizer("polyaudit", add_special_tokens=True, verbose=False)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return [int(t) for t in full[:i]], [int(t) for t in full[i + len(plain):]]
    return [], []


def text_probe(
    name: str,
    text: str,
    tokenizer: Any,
    profile: Profile,
    max_positions: int | None,
    seed: int,
) -> ProbeSet:
    """Tokenize `text` once, cut it into non-overlapping chunks of L = min(profile.seq_len,
    max_positions) tokens, pick profile.n_seq chunks with a seeded rng, and keep k evenly spaced
    positions of each after the (scaled) skip, k at most profile.max_samples // n_seq (the kept
    samples stay within the profile's budget however many sequences are asked for).

    Every sequence carries the special tokens the tokenizer adds to one text (`special_tokens`:
    BOS for Llama-style decoders, [CLS] ... [SEP] for BERT-style encoders) within its L tokens; the
    kept positions are never on them (the skip counts from the first text token).

    Fewer chunks than profile.n_seq: all are used and meta["capped"] is True.
    """
    seq_len = profile.seq_len if max_positions is None else min(profile.seq_len, int(max_positions))
    if seq_len < 1:
        raise PolyauditError(
            f"text probe {name}: the model's context ({max_positions}) leaves no room for a sequence"
        )
    prefix, suffix = special_tokens(tokenizer)
    body_len = seq_len - len(prefix) - len(suffix)  # text tokens per sequence
    if body_len < 1:
        raise PolyauditError(f"text probe {name}: sequences of {seq_len} tokens leave no room for text beside the "
                             f"{len(prefix) + len(suffix)} special tokens the tokenizer adds")
    ids = np.asarray(_encode(tokenizer, text), dtype=np.int64)
    n_chunks = int(ids.size // body_len)
    if n_chunks == 0:
        raise PolyauditError(
            f"probe {name} has {ids.size} tokens, fewer than one sequence of {seq_len}: use a longer text"
        )
    k, skip = scaled_sampling(profile, body_len)
    if k == 0:
        raise PolyauditError(
            f"probe {name}: sequences of {seq_len} tokens leave no position after skipping {skip}: use a profile with a smaller skip"
        )
    rng = np.random.default_rng(seed)
    n_seq = min(profile.n_seq, n_chunks)
    # the profile's sample budget: more sequences spread it over more contexts (fewer positions per
    # sequence) instead of growing every claim's memory with the number of tokens
    k_budget = max(1, profile.max_samples // n_seq)
    k = min(k, k_budget)
    chosen = np.sort(rng.choice(n_chunks, size=n_seq, replace=False))
    chunks = ids[: n_chunks * body_len].reshape(n_chunks, body_len)[chosen]
    if prefix or suffix:
        chunks = np.concatenate([np.tile(np.asarray(prefix, dtype=np.int64), (n_seq, 1)), chunks,
                                 np.tile(np.asarray(suffix, dtype=np.int64), (n_seq, 1))], axis=1)
    pos = sample_positions(body_len, k, skip) + len(prefix)
    positions = np.stack(
        [np.repeat(np.arange(n_seq, dtype=np.int64), k), np.tile(pos, n_seq)], axis=1
    )
    inputs = torch.from_numpy(np.ascontiguousarray(chunks))
    meta = {
        "seq_len": seq_len,
        "k_per_seq": k,
        "n_seq": n_seq,
        "n_seq_requested": profile.n_seq,
        "n_chunks_available": n_chunks,
        "n_tokens": int(ids.size),
        "capped": n_seq < profile.n_seq,
        "seed": seed,
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "chunks": chosen.tolist(),
        "special_tokens": {"prefix": prefix, "suffix": suffix},
        "tokenization": (f"special tokens as the model reads text: {len(prefix)} before, {len(suffix)} after each "
                         "sequence (never sampled)" if prefix or suffix else "no special tokens (the tokenizer adds none)"),
    }
    return ProbeSet(
        name=name,
        kind="tokens",
        inputs=inputs,
        attention_mask=torch.ones_like(inputs),
        positions=positions,
        skip=skip,
        meta=meta,
    )
