"""The probe specs polyaudit knows (`--probe`), with one line of help each. Light on purpose: the
plugin's option help and every "valid probes" message derive from this table, and
`polyaudit.probes.registry` refuses to start unless it has exactly one builder per entry."""

from __future__ import annotations

PROBE_KINDS: dict[str, str] = {
    "text:stdlib": "English prose shipped with CPython (the default for language models)",
    "text:PATH": "any UTF-8 text file",
    "labelled:categories": "template sentences whose kept word has a semantic category (numbers, colours, ...)",
    "digits": "scikit-learn's 8x8 digits with their classes (the default for the zoo)",
    "stimulus:moving-dot": "a dot moving on a circle, frame by frame (vector models)",
}


def probe_help() -> str:
    """`--probe` help: every spec and what it is."""
    return "; ".join(f"{spec} ({what})" for spec, what in PROBE_KINDS.items())
