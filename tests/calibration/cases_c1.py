"""Calibration settings of C1 (monosemantic polytopes): its nulls, planted effects and coverage.

Word-level subjects (tests/claims_planted/c1_planted.py): categories-like layers of 6 labels x 30
words x 3 samples ("sentences"), each word with structure of its own, resampled and permuted by
word as the claim does with labelled:categories; a seed draws fresh words (and, for the planted
effect, a fresh population). The nulls are the alternatives that could fool the comparison:
structure without semantics (clusters that carry no label information: shuffled labels, word
groups unrelated to the labels), a baseline as good as the polytopes (the same geometry; a random
layer for the random-hyperplane control), and a polytope partition with more non-empty clusters
but the same information (the plug-in bias).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "claims_planted"))

import c1_planted as words
from harness import Build, Rows, Setting, audit_rng
from polytope_planted import monosemantic_layer

from polyaudit.analyses import c1
from polyaudit.profiles import Profile

SPEC = c1.SPEC
COVERAGE_STRAY = (0.35, 0.6)  # words straying from their label's prototype: codes, bulk directions


def _entropy(p: list[float]) -> float:
    a = np.asarray(p)
    return float(-(a * np.log2(a)).sum())


def stray_entropy(stray: float, n_labels: int = 6) -> float:
    """H(label | group) in bits when a `stray` share of the words take a uniformly random group:
    the population H of a partition into the groups (balanced labels)."""
    own = 1.0 - stray + stray / n_labels
    return _entropy([own] + [stray / n_labels] * (n_labels - 1))


def _rows(w: words.Words, seed: int, profile: Profile, correction: str) -> Rows:
    rows = c1.monosemanticity(w.x, w.labels, site="words", groups=w.words, unit="word",
                              rng=audit_rng(seed, c1.CLAIM, "words"), n_boot=profile.n_boot, n_perm=profile.n_perm)
    return SPEC.adjust(rows, correction)


def _shuffled(seed: int, profile: Profile, correction: str) -> Rows:
    """The planted monosemantic layer of tests/claims_planted, labels shuffled (each sample a unit)."""
    _, x, y = monosemantic_layer(seed=10_000 + seed, n=240)
    y = np.random.default_rng([seed, 1]).permutation(y)
    rows = c1.monosemanticity(x, y, site="planted", rng=audit_rng(seed, c1.CLAIM, "planted"),
                              n_boot=profile.n_boot, n_perm=profile.n_perm)
    return SPEC.adjust(rows, correction)


def _null(draw: str) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        w = getattr(words, draw)(words.population(seed), np.random.default_rng([seed, 21]))
        return _rows(w, seed, profile, correction)

    return build


def _planted(seed: int, profile: Profile, correction: str) -> Rows:
    """A fresh population and strengths per seed: codes stray for 20-35% of the words."""
    rng = np.random.default_rng([seed, 22])
    w = words.planted(words.population(100 + seed), rng, code_stray=float(rng.uniform(0.2, 0.35)))
    return _rows(w, seed, profile, correction)


def _coverage(seed: int, profile: Profile, correction: str) -> Rows:
    """One population, fresh words per seed."""
    code, bulk = COVERAGE_STRAY
    w = words.planted(words.population(0), np.random.default_rng([seed, 23]), code_stray=code, bulk_stray=bulk)
    return _rows(w, seed, profile, correction)


SETTINGS: tuple[Setting, ...] = (
    Setting("C1", "null", "shuffled labels", _shuffled,
            what="a planted monosemantic layer with its labels shuffled (unit: sample)"),
    Setting("C1", "null", "words without semantics", _null("no_semantics"),
            what="codes and directions clustered by word groups drawn independently of the labels"),
    Setting("C1", "null", "same geometry", _null("same_geometry"), rows=("direction",),
            what="activations = scale x a +-1 pattern: the direction partition is the polytope partition"),
    Setting("C1", "null", "fragmented codes", _null("fragmented"), rows=("neuron", "direction"),
            what="extra label-free code bits: more non-empty polytope clusters, the same label information"),
    Setting("C1", "null", "random layer", _null("random_layer"), rows=("random",),
            what="a layer of random units: its own hyperplanes are random, like the control's"),
    Setting("C1", "planted", "purer polytopes", _planted, seeds=30,
            what="codes follow the word's label more often than directions do (0.6-1.1 bits)"),
    Setting("C1", "coverage", "fresh words", _coverage, rows=("direction",),
            truth={"direction": stray_entropy(COVERAGE_STRAY[1]) - stray_entropy(COVERAGE_STRAY[0])},
            what="one population, fresh words per seed; truth H(stray 0.6) - H(stray 0.35) = 0.61 bits"),
)
