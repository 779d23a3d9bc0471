"""Calibration (false-pass rate on nulls) and power (pass rate on planted effects) of every claim.

Each `Setting` builds a null or planted subject from a seed and runs the claim's own analysis
function (the one its file in claims/ calls) with the profile's bootstrap and permutation counts,
the run's multiple-comparison correction (`adjust_evidence`) and the real `verdict.decide`. The seed
varies both the subject's construction and the audit's random draws (`audit_rng`, as `--seed`
does through `Runtime.rng`).

A claim PASSes on a null when ANY row the setting speaks for PASSes (family-wise: what a user would
read as "the audit says the property holds"); on a planted subject only when EVERY such row does.

    python -m tests.calibration.table      # the table in docs/claims.md (rates, power, MDE)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from calibration_subjects import (
    COPIES,
    RATES,
    boundary_nets,
    decoupled_net,
    fourier_layers,
    iid_power_law_layers,
    monosemantic_layer,
    permuted_fourier_layers,
    planted_probe,
    power_law_layers,
    random_relu_net,
    redundant_net,
    subject_of,
    two_class_inputs,
)

from polyaudit.analyses import c1, c2, c3, c4, c5, c6
from polyaudit.claimspec import adjust_evidence
from polyaudit.interventions.downstream import SequentialDownstream
from polyaudit.profiles import PROFILES, Profile
from polyaudit.serial import stable_int
from polyaudit.verdict import Evidence, Status, decide

NULL_PROFILE, POWER_PROFILE = "quick", "default"
N_NULL, N_POWER = 40, 20  # seeds (issue 7: >= 40 null seeds, 20 planted seeds)
MAX_FALSE_PASS, MIN_POWER = 0.10, 0.90  # issue 7: <= 10% false passes (nominal 5%), >= 90% power
DIGITS_N = 1797  # the digits probe (the zoo default's) holds 1797 images; profiles cap it

Rows = dict[str, Evidence]
Build = Callable[[int, Profile, str], Rows]


def audit_rng(seed: int, *keys: object) -> np.random.Generator:
    """The generator `--seed=seed` gives a claim for these keys (`Runtime.rng`)."""
    return np.random.default_rng([seed, stable_int(*keys)])


def n_samples(profile: Profile) -> int:
    return min(profile.max_samples, DIGITS_N)


# ---- C1 ---------------------------------------------------------------------------------------


def _c1(seed: int, profile: Profile, correction: str, shuffle: bool) -> Rows:
    net, x, y = monosemantic_layer(seed=(10_000 if shuffle else 0) + seed)
    if shuffle:
        y = np.random.default_rng([seed, 1]).permutation(y)
    with torch.no_grad():
        pre = net[0](torch.from_numpy(x)).numpy()
    rows = c1.monosemanticity(pre, y, site="planted", rng=audit_rng(seed, c1.CLAIM, "planted"),
                              n_boot=profile.n_boot, n_perm=profile.n_perm)
    return adjust_evidence(rows, method=correction)


# ---- C2, C3 -----------------------------------------------------------------------------------


def _net(kind: str, seed: int) -> torch.nn.Sequential:
    if kind == "aligned":
        return boundary_nets()["aligned"]
    return decoupled_net(seed) if kind == "decoupled" else random_relu_net(seed)


def _inputs(kind: str, seed: int, net: torch.nn.Sequential, shuffle: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = two_class_inputs(seed=(0 if kind == "aligned" and not shuffle else 10_000) + seed)
    if kind == "random":  # labels: the random net's own top output
        with torch.no_grad():
            y = net(torch.from_numpy(x)).argmax(1).numpy()
    if shuffle:
        y = np.random.default_rng([seed, 1]).permutation(y)
    return x, y


def _c2(kind: str, shuffle: bool = False) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        net = _net(kind, seed)
        x, y = _inputs(kind, seed, net, shuffle)
        rows = c2.boundaries_track_semantics(
            SequentialDownstream(net), x, y, site="input", rng=audit_rng(seed, c2.CLAIM, "input"),
            settings=c2.settings_for(profile.name), n_boot=profile.n_boot)
        return adjust_evidence(rows, method=correction)

    return build


def _c3(kind: str) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        net = _net(kind, seed)
        x, y = _inputs(kind, seed, net, False)
        rows = c3.direction_validity(
            SequentialDownstream(net), x, y, site="input", rng=audit_rng(seed, c3.CLAIM, "input"),
            settings=c3.settings_for(profile.name), n_boot=profile.n_boot)
        return adjust_evidence(rows, method=correction)

    return build


# ---- C4, C5 single, C6 ------------------------------------------------------------------------

C4_PLANTED = (-1.15, -1.05, -0.95, -0.85)  # alpha steps of 0.1 per layer around the paper's -1
C56_PLANTED = (-2.5, -2.0, -1.5, -1.0)  # the planted spectra of tests/claims_coding
# C6 tests its rank correlation at the layer level (exact permutation over the layers' orderings):
# L layers give a two-sided p of at least 2 / L!, so 4 layers (0.083) can never PASS. 8 layers over
# the same alpha range (min p 2 / 8! = 5e-5; |rho| >= 0.74 is significant at 0.05) are the
# smallest planted model with room for a few adjacent layers to swap; the null uses the same 8.
C6_PLANTED = tuple(float(a) for a in np.linspace(-2.5, -1.0, 8))


def _c4(planted: bool, shuffled: bool = False) -> Build:
    """`shuffled`: the planted alphas in a random order over the layers (they differ, with no trend)."""

    def build(seed: int, profile: Profile, correction: str) -> Rows:
        rng = np.random.default_rng([seed, 2, int(planted), int(shuffled)])
        n = n_samples(profile)
        if shuffled:
            layers = power_law_layers(tuple(rng.permutation(C4_PLANTED)), n, rng)
        else:
            layers = power_law_layers(C4_PLANTED, n, rng) if planted else iid_power_law_layers(4, n, rng)
        ev = c4.alpha_depth(layers, site="resid", n_boot=profile.n_boot, rng=audit_rng(seed, c4.CLAIM, "resid"))
        return adjust_evidence({"resid": ev}, method=correction)

    return build


def _c5_single(planted: bool) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        rng = np.random.default_rng([seed, 3, int(planted)])
        n = n_samples(profile)
        if planted:  # loss increase grows with alpha (flatter layers lose more), as predicted
            layers = power_law_layers(C56_PLANTED, n, rng)
            means = np.array([0.1, 0.2, 0.3, 0.4])
        else:  # one spectrum and one mean loss increase at every layer
            layers = iid_power_law_layers(4, n, rng, alpha=-1.5)
            means = np.full(4, 0.25)
        increase = means[:, None] + 0.05 * rng.standard_normal((4, n))
        ev = c5.single_evidence(layers, increase, site="resid", n_boot=profile.n_boot,
                                rng=audit_rng(seed, c5.CLAIM, "bootstrap"))
        return {"unit": ev}

    return build


def _c6(planted: bool) -> Build:
    def build(seed: int, profile: Profile, correction: str) -> Rows:
        if planted:
            layers, trajs = fourier_layers(C6_PLANTED, n=n_samples(profile), seed=seed)
        else:
            layers, trajs = permuted_fourier_layers(C6_PLANTED, np.random.default_rng([seed, 4]),
                                                    n=n_samples(profile))
        ev = c6.action_alpha(layers, trajs, site="resid", n_boot=profile.n_boot,
                             rng=audit_rng(seed, c6.CLAIM, "resid"))
        return adjust_evidence({"resid": ev}, method=correction)

    return build


# ---- C5 family --------------------------------------------------------------------------------


def _c5_family(shuffle_rates: bool) -> Build:
    """The planted family of tests/claims_coding (training rate level i <-> COPIES[i] copies of
    each feature, 3 seeds per rate); null: the same 15 models with their rates shuffled."""

    def build(seed: int, profile: Profile, correction: str) -> Rows:
        from polyaudit.interventions.dropout_runs import measure_family

        probe = planted_probe(seed)
        members = [(r, subject_of(redundant_net(k, probe_seed=seed, seed=1000 * seed + j), probe, f"k{k}-s{j}"))
                   for r, k in zip(RATES, COPIES, strict=True) for j in range(3)]
        if shuffle_rates:
            rates = np.random.default_rng([seed, 5]).permutation([r for r, _ in members])
            members = [(float(r), sub) for r, (_, sub) in zip(rates, members, strict=True)]
        measured = measure_family(members, rng=audit_rng(seed, c5.CLAIM, "family", "unit-dropout"),
                                  batch_size=profile.batch_size)
        return c5.SPEC.adjust(c5.family_evidence(measured, n_boot=profile.n_boot, n_perm=profile.n_perm,
                                                 rng=audit_rng(seed, c5.CLAIM, "family", "bootstrap")), correction)

    return build


# ---- the settings -----------------------------------------------------------------------------



@dataclass(frozen=True)
class Setting:
    claim: str  # C1 .. C6, "C5 family", "C5 single"
    kind: Literal["null", "planted"]
    name: str
    build: Build = field(repr=False)
    rows: tuple[str, ...] | None = None  # the rows this setting speaks for (None: every row)
    enforced: bool = True  # False: reported in the table only (a debatable null)
    finding: str | None = None  # a known miscalibration: the enforcing test is a strict xfail

    @property
    def id(self) -> str:
        return f"{self.claim}-{self.name}".replace(" ", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("C1", "null", "shuffled labels", lambda s, p, c: _c1(s, p, c, shuffle=True)),
    Setting("C1", "planted", "monosemantic layer", lambda s, p, c: _c1(s, p, c, shuffle=False)),
    Setting("C2", "null", "decoupled boundaries", _c2("decoupled")),
    Setting("C2", "null", "shuffled labels", _c2("aligned", shuffle=True), rows=("diff-vs-same",)),
    Setting("C2", "null", "random-init net", _c2("random"), enforced=False),
    Setting("C2", "planted", "aligned boundaries", _c2("aligned")),
    Setting("C3", "null", "decoupled boundaries", _c3("decoupled")),
    Setting("C3", "null", "random-init net", _c3("random"), enforced=False),
    Setting("C3", "planted", "aligned boundaries", _c3("aligned")),
    Setting("C4", "null", "iid layers", _c4(planted=False)),
    Setting("C4", "null", "alphas in random order", _c4(planted=False, shuffled=True), enforced=False),
    Setting("C4", "planted", "alpha step 0.1", _c4(planted=True)),
    Setting("C5 family", "null", "rates at random", _c5_family(shuffle_rates=True)),
    Setting("C5 family", "planted", "redundancy by rate", _c5_family(shuffle_rates=False)),
    Setting("C5 single", "null", "iid layers", _c5_single(planted=False)),
    Setting("C5 single", "planted", "loss follows alpha", _c5_single(planted=True)),
    Setting("C6", "null", "frequencies at random", _c6(planted=False)),
    Setting("C6", "planted", "power-law codes", _c6(planted=True)),
)


def settings(kind: str, enforced_only: bool = True) -> list[Setting]:
    return [s for s in SETTINGS if s.kind == kind and (s.enforced or not enforced_only)]


@dataclass
class Tally:
    setting: Setting
    profile: str
    seeds: list[int]
    passed: list[int]  # seeds where the claim PASSed (see the module docstring)
    rows: list[Rows]  # evidence per seed

    @property
    def rate(self) -> float:
        return len(self.passed) / len(self.seeds)

    def statuses(self) -> list[dict[str, Status]]:
        return [{k: decide(ev, PROFILES[self.profile].alpha).status for k, ev in r.items()} for r in self.rows]


def claim_passed(setting: Setting, rows: Rows, alpha: float) -> bool:
    keys = setting.rows or tuple(rows)
    status = [decide(rows[k], alpha).status is Status.PASS for k in keys]
    return any(status) if setting.kind == "null" else all(status)


def tally(setting: Setting, seeds: Sequence[int], profile_name: str, correction: str = "holm") -> Tally:
    profile = PROFILES[profile_name]
    out = Tally(setting, profile_name, list(seeds), [], [])
    for seed in seeds:
        rows = setting.build(seed, profile, correction)
        out.rows.append(rows)
        if claim_passed(setting, rows, profile.alpha):
            out.passed.append(seed)
    return out
