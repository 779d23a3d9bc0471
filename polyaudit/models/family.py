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

This module parses families; loading them is `polyaudit.run.family`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from polyaudit.errors import PolyauditError

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
