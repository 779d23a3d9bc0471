"""Subjects for C1 at the word level: categories-like layers, where every word (the unit of
replication) appears in several samples and has structure of its own.

A population is a set of labels with prototypes; a draw takes fresh words from it (so a
calibration seed draws new words, as a new probe of the same categories would) and several
"sentences" per word. Pre-activations have two blocks, as in `polytope_planted.monosemantic_layer`:
"switch" units with small magnitudes whose signs form the spline code, and "bulk" units, always
on with large magnitudes, that dominate every activation's direction and the most active unit.

- `planted`: the switch signs follow the prototype of the word's label, the bulk direction too,
  but a larger share of the words stray to another label's bulk prototype: polytopes are purer.
- `no_semantics`: codes and bulk are clustered by word groups drawn independently of the labels:
  structure without semantics.
- `same_geometry`: activations are a positive scale times a +-1 pattern, so the direction of an
  activation is its spline code: the polytope and direction partitions are equally good.
- `fragmented`: blocks of units name a group of labels (equally for codes, directions and the most
  active unit); two extra sign bits per word, independent of the label, split the codes further:
  more non-empty polytope clusters with the same label information.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Words:
    """One draw: pre-activations [n, d], labels [n] and the word of each sample [n]."""

    x: np.ndarray
    labels: np.ndarray
    words: np.ndarray


@dataclass(frozen=True)
class Population:
    """Label prototypes: code signs [L, n_switch] and bulk directions [L, n_bulk]."""

    codes: np.ndarray
    bulk: np.ndarray

    @property
    def n_labels(self) -> int:
        return int(self.codes.shape[0])


def population(seed: int, n_labels: int = 6, n_switch: int = 24, n_bulk: int = 24) -> Population:
    rng = np.random.default_rng([seed, 11])
    return Population(codes=rng.choice([-1.0, 1.0], size=(n_labels, n_switch)),
                      bulk=rng.standard_normal((n_labels, n_bulk)))


def _flip(signs: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return signs * np.where(rng.random(signs.shape) < p, -1.0, 1.0)


def _draw(word_signs: np.ndarray, word_bulk: np.ndarray, word_labels: np.ndarray, sentences: int,
          rng: np.random.Generator, sentence_flip: float = 0.03) -> Words:
    """Samples of every word: its code with a few bits flipped per sentence, its bulk plus noise."""
    u = np.repeat(np.arange(word_labels.size), sentences)
    signs = _flip(word_signs[u], sentence_flip, rng)
    switch = 0.05 * signs * (0.5 + rng.random(signs.shape))
    bulk = np.maximum(3.0 + word_bulk[u] + 0.3 * rng.standard_normal((u.size, word_bulk.shape[1])), 0.1)
    return Words(x=np.concatenate([switch, bulk], axis=1), labels=word_labels[u], words=u)


def _groups(yw: np.ndarray, stray: float, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Each word's group: its label, or for a `stray` share of the words a uniformly random one."""
    return np.where(rng.random(yw.size) < stray, rng.integers(0, n_groups, yw.size), yw)


def planted(pop: Population, rng: np.random.Generator, words_per_label: int = 30, sentences: int = 3,
            code_stray: float = 0.25, bulk_stray: float = 0.6) -> Words:
    """Codes follow the prototype of the word's label except for a `code_stray` share of the words
    (their code is another label's prototype); the bulk direction likewise, with more strays
    (`bulk_stray`). Well-separated prototypes: the partitions do not depend on the probe size."""
    yw = np.repeat(np.arange(pop.n_labels), words_per_label)
    signs = _flip(pop.codes[_groups(yw, code_stray, pop.n_labels, rng)], 0.05, rng)
    bulk = 0.3 * rng.standard_normal((yw.size, pop.bulk.shape[1])) + pop.bulk[_groups(yw, bulk_stray, pop.n_labels, rng)]
    return _draw(signs, bulk, yw, sentences, rng)


def no_semantics(pop: Population, rng: np.random.Generator, words_per_label: int = 30,
                 sentences: int = 3) -> Words:
    """Every word takes the code and bulk prototype of a random group, whatever its label."""
    yw = np.repeat(np.arange(pop.n_labels), words_per_label)
    group = rng.integers(0, pop.n_labels, yw.size)
    signs = _flip(pop.codes[group], 0.1, rng)
    bulk = 0.5 * rng.standard_normal((yw.size, pop.bulk.shape[1])) + pop.bulk[group]
    return _draw(signs, bulk, yw, sentences, rng)


def same_geometry(pop: Population, rng: np.random.Generator, words_per_label: int = 30,
                  sentences: int = 3) -> Words:
    """x = scale x (code + small noise): the direction is the code; the label sets the code as in
    `planted` (a third of the bits flipped per word)."""
    yw = np.repeat(np.arange(pop.n_labels), words_per_label)
    word_signs = _flip(pop.codes[yw], 1 / 3, rng)
    u = np.repeat(np.arange(yw.size), sentences)
    signs = _flip(word_signs[u], 0.03, rng)
    scale = rng.uniform(0.5, 2.0, (u.size, 1))
    return Words(x=scale * (signs + 0.05 * rng.standard_normal(signs.shape)), labels=yw[u], words=u)


def fragmented(pop: Population, rng: np.random.Generator, words_per_label: int = 30, sentences: int = 3,
               n_groups: int = 3, block: int = 4, n_extra: int = 2, stray: float = 0.2) -> Words:
    """Label y names group y mod n_groups (a random group for a `stray` share of the words); a
    block of units per group, the active block on (its first unit most), the others off; `n_extra`
    sign bits per word, independent of the label."""
    yw = np.repeat(np.arange(pop.n_labels), words_per_label)
    group = np.where(rng.random(yw.size) < stray, rng.integers(0, n_groups, yw.size), yw % n_groups)
    extra = rng.choice([-0.3, 0.3], size=(yw.size, n_extra))
    u = np.repeat(np.arange(yw.size), sentences)
    on = np.zeros((u.size, n_groups, block)) - 1.0
    on[np.arange(u.size), group[u]] = 2.0
    on[np.arange(u.size), group[u], 0] = 3.0
    x = np.concatenate([on.reshape(u.size, -1), extra[u]], axis=1)
    return Words(x=x + 0.1 * rng.standard_normal(x.shape), labels=yw[u], words=u)


def random_layer(pop: Population, rng: np.random.Generator, words_per_label: int = 30, sentences: int = 3,
                 width: int = 32) -> Words:
    """A layer of random units (Gaussian weights and biases) over inputs with label structure
    (label prototype + word + sentence noise): its spline codes are random hyperplanes, as are the
    codes of the `random` control, so the network's own orientations have nothing to add."""
    yw = np.repeat(np.arange(pop.n_labels), words_per_label)
    word = pop.bulk[yw] + 0.8 * rng.standard_normal((yw.size, pop.bulk.shape[1]))
    u = np.repeat(np.arange(yw.size), sentences)
    inputs = word[u] + 0.3 * rng.standard_normal((u.size, word.shape[1]))
    weight = rng.standard_normal((inputs.shape[1], width)) / np.sqrt(inputs.shape[1])
    return Words(x=inputs @ weight + 0.5 * rng.standard_normal(width), labels=yw[u], words=u)
