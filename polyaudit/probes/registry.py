"""Build a probe set from a spec string (`--probe`), checked against the model it will run on."""

from __future__ import annotations

from typing import Any

from polyaudit.errors import PolyauditError
from polyaudit.models.base import LoadedModel
from polyaudit.probes.base import ProbeSet
from polyaudit.profiles import Profile

VALID_SPECS = ("text:stdlib", "text:PATH", "labelled:categories", "digits", "stimulus:moving-dot")


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


def _build(spec: str, loaded: LoadedModel, profile: Profile, seed: int) -> ProbeSet:
    if spec.startswith("text:"):
        from polyaudit.probes.text import read_text_file, stdlib_text, text_probe

        arg = spec[len("text:") :]
        if not arg:
            raise PolyauditError("probe spec 'text:' names no text: use text:stdlib or text:PATH")
        _needs_tokenizer(spec, loaded)
        if arg == "stdlib":
            text, name = stdlib_text(), "text:stdlib"
        else:
            from pathlib import Path

            text, name = read_text_file(arg), f"text:{Path(arg).name}"
        return text_probe(name, text, loaded.tokenizer, profile, loaded.max_positions, seed)
    if spec == "labelled:categories":
        from polyaudit.probes.categories import categories_probe

        _needs_tokenizer(spec, loaded)
        return categories_probe(loaded.tokenizer, profile, seed, loaded.max_positions)
    if spec == "digits":
        from polyaudit.probes.digits import digits_probe

        _needs_vectors(spec, loaded)
        return digits_probe(profile, seed)
    if spec == "stimulus:moving-dot":
        from polyaudit.probes.digits import moving_dot_probe

        _needs_vectors(spec, loaded)
        return moving_dot_probe()
    raise PolyauditError(f"unknown probe {spec!r}; valid probes: {', '.join(VALID_SPECS)}")


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
    selector = getattr(loaded.adapter, "pos", None)
    if selector is not None:  # a convolutional model: samples are channel vectors at chosen positions
        from polyaudit.models.conv import pos_text
        from polyaudit.probes.spatial import at_positions

        probe = at_positions(probe, pos_text(selector), int(getattr(loaded.adapter, "positions_per_input", 1)))
    if probe.n_samples < min_samples:
        raise PolyauditError(
            f"probe {shown} yields {probe.n_samples} samples but the profile needs at least {min_samples}: "
            "use a longer text, --profile quick, or a probe with more inputs"
        )
    return probe
