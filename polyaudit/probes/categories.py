"""`labelled:categories`: words from semantic categories placed in neutral sentence templates.

Every kept sample is the LAST token of the inserted word, labelled by the word's category (numbers,
colours, months, animals, ...). This gives the labelled token activations that the Polytope Lens'
monosemanticity prediction needs (Black, Sharkey et al. 2022, sec. 4: polytopes vs directions as
units of description), for any model with a tokenizer. The words and templates live in
`data/categories.json` (written for this project); sentences are balanced across categories.

The unit of replication is the WORD: each word appears in several sentences, whose samples share
the word's own structure, and a statement about categories generalises over words. The probe's
`groups` (the resampling unit capture hands to the claims) are therefore the word of each sample,
not its sentence (`WordProbeSet`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import torch

from polyaudit.errors import PolyauditError
from polyaudit.probes.base import ProbeSet
from polyaudit.profiles import Profile

SLOT = "{w}"


@dataclass(frozen=True)
class WordProbeSet(ProbeSet):
    """A ProbeSet whose resampling unit is the word of each kept sample (`words`, int [n_samples],
    one id per distinct word), not its sentence. The sentence of a sample is `positions[:, 0]`."""

    words: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def groups(self) -> np.ndarray:
        """The word of each kept sample: its resampling unit."""
        return np.asarray(self.words, dtype=np.int64)


@lru_cache(maxsize=1)
def load_categories() -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """(category -> words, templates) from the shipped data file."""
    raw = json.loads(
        resources.files("polyaudit.probes").joinpath("data/categories.json").read_text("utf-8")
    )
    cats = {name: tuple(words) for name, words in raw["categories"].items()}
    templates = tuple(raw["templates"])
    for t in templates:
        if t.count(SLOT) != 1:
            raise PolyauditError(f"categories template {t!r} must have exactly one {SLOT} slot")
    return cats, templates


def _choose(
    cats: dict[str, tuple[str, ...]],
    templates: tuple[str, ...],
    max_samples: int,
    rng: np.random.Generator,
) -> list[tuple[int, str, int]]:
    """(category index, word, template index) triples, the same number for every category."""
    per_cat = min(
        max_samples // len(cats), *(len(words) * len(templates) for words in cats.values())
    )
    if per_cat < 1:
        raise PolyauditError(
            f"labelled:categories needs at least {len(cats)} samples (one per category), the profile allows {max_samples}"
        )
    chosen: list[tuple[int, str, int]] = []
    for c, words in enumerate(cats.values()):
        combos = rng.choice(len(words) * len(templates), size=per_cat, replace=False)
        chosen.extend((c, words[int(i) // len(templates)], int(i) % len(templates)) for i in combos)
    order = rng.permutation(len(chosen))
    return [chosen[int(i)] for i in order]


def _last_word_token(offsets: list[tuple[int, int]], start: int, end: int) -> int:
    """Index of the last non-special token overlapping the characters [start, end)."""
    hit = -1
    for j, (s, e) in enumerate(offsets):
        if e > s and s < end and e > start:
            hit = j
    return hit


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, attr, None)
        if isinstance(v, int):
            return v
    return 0


def categories_probe(
    tokenizer: Any, profile: Profile, seed: int, max_positions: int | None = None
) -> ProbeSet:
    """Template sentences, one labelled word each; keep the word's last token per sentence.

    Up to min(profile.max_samples, all word x template combinations) sentences, balanced across
    categories, chosen with `numpy.random.default_rng(seed)`. Right-padded, with attention mask.
    Its `groups` are the words (a `WordProbeSet`).
    """
    if not getattr(tokenizer, "is_fast", True):
        raise PolyauditError(
            "labelled:categories needs a fast (Rust) tokenizer for character offsets: load the model with its fast tokenizer"
        )
    cats, templates = load_categories()
    rng = np.random.default_rng(seed)
    chosen = _choose(cats, templates, profile.max_samples, rng)
    sentences = [templates[t].replace(SLOT, w) for _, w, t in chosen]
    enc = tokenizer(sentences, add_special_tokens=True, return_offsets_mapping=True, verbose=False)
    ids_list: list[list[int]] = [list(x) for x in enc["input_ids"]]
    length = max(len(x) for x in ids_list)
    if max_positions is not None and length > max_positions:
        raise PolyauditError(
            f"labelled:categories sentences need {length} positions, the model's context is {max_positions}"
        )
    ids = np.full((len(ids_list), length), _pad_id(tokenizer), dtype=np.int64)
    mask = np.zeros((len(ids_list), length), dtype=np.int64)
    pos = np.empty(len(ids_list), dtype=np.int64)
    for i, ((_, w, t), row, offsets) in enumerate(
        zip(chosen, ids_list, enc["offset_mapping"], strict=True)
    ):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
        start = templates[t].index(SLOT)
        pos[i] = _last_word_token([tuple(o) for o in offsets], start, start + len(w))
        if pos[i] < 0:
            raise PolyauditError(
                f"labelled:categories: the tokenizer maps no token to the word {w!r} in {sentences[i]!r}"
            )
    labels = np.array([c for c, _, _ in chosen], dtype=np.int64)
    words = np.unique([f"{c}:{w}" for c, w, _ in chosen], return_inverse=True)[1].reshape(-1).astype(np.int64)
    names = tuple(cats)
    words_used = {
        names[c]: sorted({w for cc, w, _ in chosen if cc == c}) for c in range(len(names))
    }
    meta = {
        "n_categories": len(names),
        "n_templates": len(templates),
        "n_per_category": len(chosen) // len(names),
        "n_words": int(words.max()) + 1,
        "seed": seed,
        "words": words_used,
        "sentences": sentences,
    }
    return WordProbeSet(
        name="labelled:categories",
        kind="tokens",
        inputs=torch.from_numpy(ids),
        labels=labels,
        label_names=names,
        attention_mask=torch.from_numpy(mask),
        positions=np.stack([np.arange(len(pos), dtype=np.int64), pos], axis=1),
        skip=0,
        meta=meta,
        words=words,
    )
