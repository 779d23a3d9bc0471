"""Build a probe set from a spec string (`--probe`), checked against the model it will run on: one
registered builder per kind declared in `polyaudit.probes.kinds`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from polyaudit.errors import PolyauditError
from polyaudit.models.base import LoadedModel
from polyaudit.probes.base import ProbeSet
from polyaudit.probes.categories import categories_probe
from polyaudit.probes.digits import digits_probe, moving_dot_probe
from polyaudit.probes.kinds import PROBE_KINDS
from polyaudit.probes.spatial import at_positions
from polyaudit.probes.text import read_text_file, stdlib_text, text_probe
from polyaudit.profiles import Profile


def _needs_tokenizer(spec: str, loaded: LoadedModel) -> None:
    if loaded.tokenizer is None or loaded.adapter.input_kind != "tokens":
        raise PolyauditError(
            f"probe {spec} needs a model with a tokenizer, and {loaded.spec} takes "
            f"{loaded.adapter.input_kind} without one: use --probe=digits or a text model"
        )


def _needs_vectors(spec: str, loaded: LoadedModel) -> None:
    if loaded.adapter.input_kind != "vectors":
        raise PolyauditError(
            f"probe {spec} feeds 8x8 images, and {loaded.spec} is a {loaded.adapter.input_kind} model: "
            "use --probe=text:stdlib or --probe=labelled:categories"
        )


Builder = Callable[[str, LoadedModel, Profile, int], ProbeSet]
BUILDERS: dict[str, Builder] = {}


def register_probe(kind: str) -> Callable[[Builder], Builder]:
    """Register the builder of a probe kind declared in `PROBE_KINDS`; a kind registered twice, or
    one that is not declared there, is refused with the list of known kinds."""

    def add(build: Builder) -> Builder:
        if kind not in PROBE_KINDS or kind in BUILDERS:
            raise PolyauditError(f"probe kind {kind!r} is {'registered twice' if kind in BUILDERS else 'not declared'}: "
                                 f"the kinds are {', '.join(PROBE_KINDS)}")
        BUILDERS[kind] = build
        return build

    return add


def _kind_of(spec: str) -> str:
    if spec.startswith("text:"):
        return "text:stdlib" if spec == "text:stdlib" else "text:PATH"
    return spec


@register_probe("text:stdlib")
@register_probe("text:PATH")
def _text(spec: str, loaded: LoadedModel, profile: Profile, seed: int) -> ProbeSet:
    arg = spec[len("text:") :]
    if not arg:
        raise PolyauditError("probe spec 'text:' names no text: use text:stdlib or text:PATH")
    _needs_tokenizer(spec, loaded)
    if arg == "stdlib":
        text, name = stdlib_text(), "text:stdlib"
    else:
        text, name = read_text_file(arg), f"text:{Path(arg).name}"
    return text_probe(name, text, loaded.tokenizer, profile, loaded.max_positions, seed)


@register_probe("labelled:categories")
def _categories(spec: str, loaded: LoadedModel, profile: Profile, seed: int) -> ProbeSet:
    _needs_tokenizer(spec, loaded)
    return categories_probe(loaded.tokenizer, profile, seed, loaded.max_positions)


@register_probe("digits")
def _digits(spec: str, loaded: LoadedModel, profile: Profile, seed: int) -> ProbeSet:
    _needs_vectors(spec, loaded)
    return digits_probe(profile, seed)


@register_probe("stimulus:moving-dot")
def _moving_dot(spec: str, loaded: LoadedModel, profile: Profile, seed: int) -> ProbeSet:
    _needs_vectors(spec, loaded)
    return moving_dot_probe()


if set(BUILDERS) != set(PROBE_KINDS):  # every declared kind has its builder
    raise PolyauditError(f"probe kinds without a builder: {', '.join(sorted(set(PROBE_KINDS) - set(BUILDERS)))}")


def _build(spec: str, loaded: LoadedModel, profile: Profile, seed: int) -> ProbeSet:
    build = BUILDERS.get(_kind_of(spec))
    if build is None:
        raise PolyauditError(f"unknown probe {spec!r}; valid probes: {', '.join(PROBE_KINDS)}")
    return build(spec, loaded, profile, seed)


def _own_probe(raw: Any) -> ProbeSet:
    """The probe set of a model's own probe data (a factory's checked `FactoryProbe`, or a ProbeSet
    it built itself)."""
    if isinstance(raw, ProbeSet):
        return raw
    return ProbeSet(name=raw.name, kind="vectors", inputs=raw.inputs, labels=raw.labels,
                    label_names=raw.label_names)


def build_probe(
    spec: str | None, loaded: LoadedModel, profile: Profile, seed: int, *, min_samples: int = 0
) -> ProbeSet:
    """The probe set for `spec` on `loaded`. None: the model's own probe, else its default spec.

    One-line PolyauditError for unknown specs, a probe the model cannot take, or fewer than
    `min_samples` kept samples.
    """
    if spec is None:
        if loaded.probe is not None:
            probe = _own_probe(loaded.probe)
            shown = probe.name
        elif loaded.default_probe:
            shown = loaded.default_probe
            probe = _build(shown, loaded, profile, seed)
        else:
            raise PolyauditError(
                f"model {loaded.spec} names no default probe: pass one, e.g. --probe=text:stdlib or --probe=digits"
            )
    else:
        shown = spec.strip()
        probe = _build(shown, loaded, profile, seed)
    selector = loaded.adapter.position_selector
    if selector is not None:  # spatial positions: samples are channel vectors at chosen positions
        probe = at_positions(probe, selector, loaded.adapter.positions_per_input)
    if probe.n_samples < min_samples:
        raise PolyauditError(
            f"probe {shown} yields {probe.n_samples} samples but the profile needs at least {min_samples}: "
            "use a longer text, --profile quick, or a probe with more inputs"
        )
    return probe
