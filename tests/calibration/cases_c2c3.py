"""Calibration settings of C2 and C3 (boundaries and semantics): nulls, planted effects, coverage.

Nulls (quick profile, 60 seeds; a fresh net and fresh inputs per seed; the exact evaluator, and
for the inert label-axis nets also the adapter's hooks with the per-step linearized control):
- boundaries that cannot change the output (output weight 0) in every direction, and along the
  label axis exactly where the output changes (`decoupled_net(axis=...)`): for C3 the latter is
  also the null where boundaries and semantic change share a geometric cause (where a scaled or
  moved input crosses them depends on its x0, as its change does);
- structure without semantics: the planted net with its labels shuffled (C2's diff-vs-same);
- the planted negative controls `control_paths` (C2) and `control_scale` (C3): the output changes
  inside one polytope and is flat where the (inert) boundaries are;
- random-init nets (the control twin's kind of subject; their boundaries do shape their output, so they are
  reported here as nulls of "learned", held to the same rule; a strict-xfail finding if they fail it).
Planted (default profile, 30 seeds): `aligned_net(seed)`, a net whose output changes between pairs
of boundaries, with steps, trend and inert units drawn from the seed.
Coverage (quick, 60 seeds): `aligned_net(0)` (linear, scale) and `random_relu_net(0)` (diff-vs-same,
whose truth there lies inside (-1, 1)) on fresh inputs; the truth is the row's estimand on 20 times
as many paths (inputs) drawn from 20 times as many samples of the same distribution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

import numpy as np
import torch
from calibration_subjects import (
    aligned_net,
    boundary_nets,
    decoupled_net,
    random_relu_net,
    two_class_inputs,
)
from harness import Build, Rows, Setting, audit_rng

from polyaudit.analyses import c2, c3
from polyaudit.interventions.downstream import (
    AdapterDownstream,
    Contexts,
    SequentialDownstream,
    later_sites,
)
from polyaudit.models.sequential import SequentialAdapter
from polyaudit.profiles import PROFILES, Profile

Net = Callable[[int], torch.nn.Sequential]


def _inputs(seed: int, net: torch.nn.Sequential, labels: str, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Fresh inputs of `two_class_inputs`; labels: the class ("geometric"), the net's own top output
    with its output bias centred so both classes occur ("own": logit difference above its median on
    a fixed reference sample), or the class shuffled ("shuffled")."""
    x, y = two_class_inputs(seed=10_000 + seed, n=n)
    if labels == "own":
        y = (_margin(net, x) > np.median(_margin(net, two_class_inputs(seed=123_456, n=4000)[0]))).astype(np.int64)
    elif labels == "shuffled":
        y = np.random.default_rng([seed, 1]).permutation(y)
    return x, y


def _margin(net: torch.nn.Sequential, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    return out[:, 1] - out[:, 0]


def _down(net: torch.nn.Sequential, x: np.ndarray, hooks: bool) -> object:
    """The exact evaluator (anchored control), or the adapter's hooks (sampled crossings, per-step
    linearized control: the route of models that are not piecewise linear)."""
    if not hooks:
        return SequentialDownstream(net)
    adapter = SequentialAdapter(net)
    return AdapterDownstream(adapter, None, later_sites(adapter, None), Contexts(torch.from_numpy(x)))


def _run(claim: str, net: torch.nn.Sequential, x: np.ndarray, y: np.ndarray, seed: int, profile: Profile,
         correction: str, settings: object | None = None, hooks: bool = False) -> Rows:
    if claim == "C2":
        rows = c2.boundaries_track_semantics(
            _down(net, x, hooks), x, y, site="input", rng=audit_rng(seed, c2.CLAIM, "input"),
            settings=settings or c2.settings_for(profile.name), n_boot=profile.n_boot)
        return c2.SPEC.adjust(rows, correction)
    rows = c3.direction_validity(
        _down(net, x, hooks), x, y, site="input", rng=audit_rng(seed, c3.CLAIM, "input"),
        settings=settings or c3.settings_for(profile.name), n_boot=profile.n_boot)
    return c3.SPEC.adjust(rows, correction)


def _case(claim: str, net: Net, labels: str = "geometric", hooks: bool = False) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        n = net(seed)
        x, y = _inputs(seed, n, labels)
        return _run(claim, n, x, y, seed, profile, correction, hooks=hooks)

    return build


def _fixed(name: str) -> Net:
    return lambda seed: boundary_nets()[name]


# ---- coverage: the truth on 20 times as many paths / inputs -----------------------------------
SCALE = 20
COVERAGE: dict[str, tuple[Net, str]] = {  # subject of each coverage setting: net, labels
    "aligned": (lambda seed: aligned_net(0), "geometric"),
    "random": (lambda seed: random_relu_net(0), "own"),  # diff-vs-same well inside (-1, 1)
}


@functools.cache
def truth(claim: str, row: str, subject: str) -> float:
    """The row's estimand on the coverage subject: its effect on SCALE times as many paths (C2) or
    inputs (C3), drawn from SCALE times as many samples (quick profile's other settings)."""
    make, labels = COVERAGE[subject]
    net = make(0)
    x, y = _inputs(999_999 - 10_000, net, labels, n=200 * SCALE)
    if claim == "C2":
        s2 = c2.settings_for("quick")
        settings: object = replace(s2, n_paths=s2.n_paths * SCALE)
    else:
        s3 = c3.settings_for("quick")
        settings = replace(s3, n_inputs=s3.n_inputs * SCALE)
    rows = _run(claim, net, x, y, 0, PROFILES["quick"], "holm", settings)
    return float(rows[row].effect)


class _Truth(Mapping[str, float]):
    """{row: truth}, computed when first read (not when the settings are collected)."""

    def __init__(self, claim: str, row: str, subject: str) -> None:
        self.claim, self.row, self.subject = claim, row, subject

    def __getitem__(self, key: str) -> float:
        if key != self.row:
            raise KeyError(key)
        return truth(self.claim, key, self.subject)

    def __iter__(self) -> Iterator[str]:
        return iter((self.row,))

    def __len__(self) -> int:
        return 1


def _coverage(claim: str, row: str, subject: str) -> Setting:
    make, labels = COVERAGE[subject]
    return Setting(claim, "coverage", f"{subject} net {row}", _case(claim, make, labels), rows=(row,),
                   truth=_Truth(claim, row, subject),
                   what=f"{subject}_net(0) on fresh inputs; truth: the {row} effect on {SCALE}x the paths/inputs")


SETTINGS: tuple[Setting, ...] = (
    Setting("C2", "null", "inert boundaries in every direction", _case("C2", lambda s: decoupled_net(s, axis="all")),
            what="output linear in x0; boundaries with output weight 0, random hyperplanes through the data"),
    Setting("C2", "null", "inert boundaries along the label axis",
            _case("C2", lambda s: decoupled_net(s, axis="label")),
            what="output linear in x0; boundaries with output weight 0 across x0 where the output changes"),
    Setting("C2", "null", "inert boundaries along the label axis through hooks",
            _case("C2", lambda s: decoupled_net(s, axis="label"), hooks=True),
            what="the same through the adapter's hooks: sampled crossings, the per-step linearized control"),
    Setting("C2", "null", "shuffled labels", _case("C2", aligned_net, "shuffled"), rows=("diff-vs-same",),
            what="the planted net with its labels shuffled"),
    Setting("C2", "null", "control paths", _case("C2", _fixed("control_paths")), rows=("linear", "slerp"),
            what="the output changes inside one polytope; inert boundaries where it is flat"),
    Setting("C2", "null", "random init", _case("C2", random_relu_net, "own"),
            what="a random-init ReLU MLP, labels its own (bias-centred) top output (what the control twin is)"),
    Setting("C2", "null", "random init with class labels", _case("C2", random_relu_net), rows=("diff-vs-same",),
            what="a random-init ReLU MLP, labels the input's class (separated, so different-label paths are longer)"),
    Setting("C2", "planted", "aligned boundaries", _case("C2", aligned_net), profile="default", seeds=30,
            what="a seeded net whose output changes between pairs of boundaries"),
    Setting("C3", "null", "inert boundaries in every direction", _case("C3", lambda s: decoupled_net(s, axis="all")),
            what="output linear in x0; boundaries with output weight 0, random hyperplanes through the data"),
    Setting("C3", "null", "shared geometric cause", _case("C3", lambda s: decoupled_net(s, axis="label")),
            what="inert boundaries across x0 where the output changes: crossings and change both follow x0"),
    Setting("C3", "null", "shared geometric cause through hooks", _case("C3", lambda s: decoupled_net(s, axis="label"),
                                                                 hooks=True),
            what="the same through the adapter's hooks: sampled crossings, the per-step linearized control"),
    Setting("C3", "null", "control scale", _case("C3", _fixed("control_scale")),
            what="the output changes inside one polytope (c < 1); inert boundaries where it is flat (c > 1)"),
    Setting("C3", "null", "random init", _case("C3", random_relu_net, "own"),
            what="a random-init ReLU MLP, labels its own (bias-centred) top output (what the control twin is)"),
    Setting("C3", "planted", "aligned boundaries", _case("C3", aligned_net), profile="default", seeds=30,
            what="a seeded net whose output changes between pairs of boundaries"),
    _coverage("C2", "linear", "aligned"),
    _coverage("C2", "diff-vs-same", "random"),
    _coverage("C3", "scale", "aligned"),
)
