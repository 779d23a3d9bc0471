"""Model families: models identical but for the dropout rate they were trained with (claim C5).

    --family zoo:mlp-digits                               # rates 0, .2, .4, .6, .8 x seeds 0, 1, 2
    --family zoo:conv-ae-digits?rates=0,0.4,0.8&seeds=5&width=16
    --family 0.0=./ckpt_a,0.2=./ckpt_b,0.4=./ckpt_c       # your own: RATE=SPEC, any --model spec

A zoo family trains its members on first use (deterministic from each seed, cached like any zoo
model, one progress bar for the family); `rates` and `seeds` (a count: seeds 0..n-1) choose the
grid, every other parameter goes to each member. In your own family a rate may repeat (several
seeds per rate). Without `--family`, auditing a zoo model whose recipe has a dropout parameter
audits its family (`zoo:mlp-digits?width=64` -> the family `zoo:mlp-digits?width=64`); any other
model has none and the family rows are SKIPPED with the reason.

A loaded family (`FamilySubject`) stands where a model under audit stands (id, spec, probe,
provenance), so family rows reach the report like every other row; its members are ordinary
run-time subjects, with their own probes and cached captures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyaudit.errors import PolyauditError

if TYPE_CHECKING:
    from polyaudit.probes.base import ProbeSet
    from polyaudit.runtime import Runtime, Subject

DEFAULT_RATES: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)
DEFAULT_SEEDS = 3
MIN_RATES = 3
FAMILY_KEYS = ("rates", "seeds")
NONE_PREFIX = "none:"  # parameter key of a model without a family
OF_PREFIX = "of:"  # parameter key of the implicit family of a zoo --model


@dataclass(frozen=True)
class Member:
    rate: float
    spec: str
    seed: int | None = None  # zoo members: the training seed


@dataclass(frozen=True)
class FamilySpec:
    """A parsed `--family`: its canonical text, members, and for zoo families the recipe name."""

    text: str
    members: tuple[Member, ...]
    zoo_name: str | None = None

    @property
    def id(self) -> str:
        from polyaudit.models.base import model_id

        if self.zoo_name is not None:
            return "family-" + model_id(self.text)
        return f"family-{model_id(self.members[0].spec)}+{len(self.members) - 1}"

    @property
    def rates(self) -> tuple[float, ...]:
        return tuple(m.rate for m in self.members)


def _rate(text: str, where: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise PolyauditError(f"dropout rate {text!r} in {where!r} is not a number") from None
    if not 0.0 <= rate < 1.0:
        raise PolyauditError(f"dropout rate {text} in {where!r} must be in [0, 1)")
    return rate


def _check_rates(rates: list[float], where: str) -> None:
    if len(set(rates)) < MIN_RATES:
        raise PolyauditError(
            f"family {where!r} has {len(set(rates))} distinct dropout rate(s): a trend needs at least "
            f"{MIN_RATES}, e.g. --family 0.0=./a,0.4=./b,0.8=./c"
        )


def zoo_family(name: str, params: Mapping[str, str], rates: tuple[float, ...] = DEFAULT_RATES,
               seeds: int = DEFAULT_SEEDS) -> FamilySpec:
    """The family of zoo recipe `name`: every rate x seeds 0..seeds-1, other parameters shared."""
    from polyaudit.models.zoo import REGISTRY, resolve

    where = f"zoo:{name}"
    if name in REGISTRY and "dropout" not in REGISTRY[name].params:
        raise PolyauditError(f"zoo:{name} has no dropout parameter, so it has no dropout family")
    fixed = {k: v for k, v in params.items() if k not in FAMILY_KEYS}
    for key in ("dropout", "seed"):
        if key in fixed:
            raise PolyauditError(
                f"a family varies {key}: drop {key}= from {where!r} and use rates=0,0.4,0.8 and seeds=N"
            )
    _check_rates(list(rates), where)
    resolve(name, {**fixed, "dropout": str(rates[0]), "seed": "0"})  # validates the shared params
    query = "&".join(f"{k}={v}" for k, v in fixed.items())
    extra = ([f"rates={','.join(f'{r:g}' for r in rates)}"] if rates != DEFAULT_RATES else []) + (
        [f"seeds={seeds}"] if seeds != DEFAULT_SEEDS else [])
    text = f"zoo:{name}" + ("?" + "&".join(filter(None, [query, *extra])) if query or extra else "")
    members = tuple(
        Member(rate, f"zoo:{name}?" + "&".join(filter(None, [query, f"dropout={rate:g}", f"seed={s}"])), s)
        for rate in rates for s in range(seeds)
    )
    return FamilySpec(text, members, zoo_name=name)


def parse_family(text: str) -> FamilySpec:
    """Parse a `--family` value (one-line PolyauditError when it cannot be)."""
    from polyaudit.models.spec import parse_spec

    s = text.strip()
    if s.startswith("zoo:"):
        head, _, query = s.partition("?")
        grid: dict[str, str] = {}
        shared: list[str] = []
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            if key in FAMILY_KEYS:
                grid[key] = value
            else:
                shared.append(pair)
        parsed = parse_spec(head + ("?" + "&".join(shared) if shared else ""))
        rates = DEFAULT_RATES
        if "rates" in grid:
            rates = tuple(_rate(r, s) for r in grid["rates"].split(",") if r)
        seeds = DEFAULT_SEEDS
        if "seeds" in grid:
            if not grid["seeds"].isdigit() or int(grid["seeds"]) < 1:
                raise PolyauditError(f"seeds={grid['seeds']} in {s!r} must be a count >= 1")
            seeds = int(grid["seeds"])
        return zoo_family(parsed.target, parsed.params, rates, seeds)
    members = []
    for part in filter(None, (p.strip() for p in s.split(","))):
        rate, eq, spec = part.partition("=")
        if not eq or not spec:
            raise PolyauditError(
                f"bad family member {part!r}: write RATE=SPEC pairs joined by commas, e.g. "
                "--family 0.0=./ckpt_a,0.4=./ckpt_b,0.8=./ckpt_c, or --family zoo:mlp-digits"
            )
        parse_spec(spec)  # a bad path or spec is reported now, in one line
        members.append(Member(_rate(rate, s), spec.strip()))
    _check_rates([m.rate for m in members], s)
    return FamilySpec(s, tuple(members))


def implicit_family(model_spec: str) -> FamilySpec | None:
    """The dropout family of a zoo model (its other parameters kept), or None for other models."""
    from polyaudit.models.spec import parse_spec
    from polyaudit.models.zoo import REGISTRY

    parsed = parse_spec(model_spec)
    entry = REGISTRY.get(parsed.target) if parsed.kind == "zoo" else None
    if entry is None or "dropout" not in entry.params:
        return None
    shared = {k: v for k, v in parsed.params.items() if k not in ("dropout", "seed")}
    return zoo_family(parsed.target, shared)


def family_site_names(fam: FamilySpec, runtime: Runtime) -> list[str]:
    """Names of the unit sites (one per layer) of the family's architecture, known at collection
    time without training: zoo families build the untrained network; others load the first member."""
    import torch

    from polyaudit.analyses.unit_dropout import unit_site_kind

    if fam.zoo_name is not None:
        from polyaudit.models.spec import parse_spec
        from polyaudit.models.zoo import resolve, zoo_adapter

        first = parse_spec(fam.members[0].spec)
        entry, params = resolve(fam.zoo_name, first.params)
        net = entry.build(params, torch.Generator().manual_seed(0)).eval()
        adapter: Any = zoo_adapter(entry, net, params)
    else:
        adapter = runtime.subject(fam.members[0].spec).adapter
    return [s.name for s in adapter.sites(unit_site_kind(adapter))]


def family_params(runtime: Runtime) -> tuple[list[tuple[str, str]], list[str]]:
    """Parametrization of family tests: (family key, unit-site name) pairs and their ids. Explicit
    `--family` values first; without them, the implicit family of each zoo `--model`, and for any
    other model one `none:SPEC` entry whose rows are SKIPPED."""
    from polyaudit.models.base import model_id

    opts = runtime.options
    keyed: dict[str, tuple[FamilySpec | None, str]] = {}  # key -> (family, id of its rows)
    for text in opts.families:
        explicit = parse_family(text)
        keyed.setdefault(explicit.text, (explicit, explicit.id))
    if not keyed:
        for spec in opts.models:
            implicit = implicit_family(spec)
            prefix = NONE_PREFIX if implicit is None else OF_PREFIX
            keyed.setdefault(prefix + spec, (implicit, model_id(spec)))
    params: list[tuple[str, str]] = []
    ids: list[str] = []
    for key, (fam, row_id) in keyed.items():
        sites = ["-"] if fam is None else family_site_names(fam, runtime)
        for site in sites:
            params.append((key, site))
            ids.append(f"{row_id}:{'no-family' if fam is None else site}")
    return params, ids


class NoFamily:
    """Stands for a model without a dropout family: family rows conclude SKIPPED on it."""

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.skip_reason = (
            f"{subject.spec} has no dropout family: pass --family zoo:mlp-digits (or zoo:cnn-digits, zoo:conv-ae-digits), "
            "or your own checkpoints as --family 0.0=./ckpt_a,0.4=./ckpt_b,0.8=./ckpt_c"
        )
        self.loaded = subject.loaded
        self.spec = subject.spec
        self.id = subject.id

    def probe(self, probe: str | None = None) -> ProbeSet:
        return self.subject.probe(probe)

    def model_info(self) -> dict[str, Any]:
        return self.subject.model_info()


@dataclass(frozen=True)
class FamilyProvenance:
    spec: str
    sha256: str


class FamilySubject:
    """A loaded family, usable where a run-time Subject is (ids, probe, provenance, results cache)."""

    skip_reason: str | None = None

    def __init__(self, fam: FamilySpec, members: list[tuple[Member, Subject]],
                 anchor: Subject | None = None) -> None:
        self.family = fam
        self.members = members
        self.anchor = anchor  # the --model whose zoo family this is (its rows carry its id)
        first = members[0][1]
        for m, sub in members[1:]:
            a, b = sub.adapter, first.adapter
            if (a.family, a.n_layers, a.input_kind) != (b.family, b.n_layers, b.input_kind):
                raise PolyauditError(
                    f"family member {m.spec} is a {a.family} model with {a.n_layers} layers, the first "
                    f"is a {b.family} with {b.n_layers}: a family's models must share their architecture"
                )
        h = hashlib.sha256()
        for m, sub in members:
            h.update(f"{m.rate}|{sub.loaded.sha256}\n".encode())
        self.spec = "family:" + fam.text
        self.id = fam.id if anchor is None else anchor.id
        self.loaded = FamilyProvenance(self.spec, h.hexdigest())

    @property
    def adapter(self) -> Any:
        return self.members[0][1].adapter

    @property
    def rates(self) -> list[float]:
        return [m.rate for m, _ in self.members]

    def probe(self, probe: str | None = None) -> ProbeSet:
        return self.members[0][1].probe(probe)

    def model_info(self) -> dict[str, Any]:
        """The family's provenance: as a model (its first member's architecture, the family's spec
        and hash) for `--family`; the audited model's own, with the family added, for the implicit
        family of a zoo `--model`, so its rows sit with that model's rows in one report."""
        members = [
            {"rate": m.rate, "spec": m.spec, "sha256": sub.loaded.sha256,
             "metrics": (sub.loaded.meta or {}).get("metrics", {})}
            for m, sub in self.members
        ]
        if self.anchor is not None:
            info = self.anchor.model_info()
            info["dropout_family"] = {"spec": self.spec, "sha256": self.loaded.sha256, "members": members}
            return info
        info = self.members[0][1].model_info()
        info.update(spec=self.spec, id=self.id, revision=None, sha256=self.loaded.sha256, members=members)
        return info


def load_family(fam: FamilySpec, runtime: Runtime, anchor: Subject | None = None) -> FamilySubject:
    """Load (zoo families: train on first use) every member, behind one progress bar."""
    from polyaudit.models.loader import load_model
    from polyaudit.progress import progress_bar
    from polyaudit.runtime import Subject

    o = runtime.options
    members: list[tuple[Member, Subject]] = []
    verb = "training/loading" if fam.zoo_name else "loading"
    with progress_bar(f"{verb} family {fam.id} ({len(fam.members)} models)", len(fam.members),
                      o.progress) as advance:
        for m in fam.members:
            loaded = load_model(m.spec, device=o.device, dtype=o.dtype, revision=o.revision,
                                trust_remote_code=o.trust_remote_code, cache_dir=o.cache_dir)
            members.append((m, Subject(loaded, o)))
            advance(1)
    return FamilySubject(fam, members, anchor)


def family_subject(runtime: Runtime, key: str) -> FamilySubject | NoFamily:
    """The family fixture's value for a parametrization key (loaded once per run)."""
    if key.startswith(NONE_PREFIX):
        return NoFamily(runtime.subject(key[len(NONE_PREFIX):]))
    if key.startswith(OF_PREFIX):
        spec = key[len(OF_PREFIX):]
        fam = implicit_family(spec)
        if fam is None:
            raise PolyauditError(f"{spec} has no dropout family")
        return runtime.memo(("family", key), lambda: load_family(fam, runtime, anchor=runtime.subject(spec)))
    return runtime.memo(("family", key), lambda: load_family(parse_family(key), runtime))
