"""The values a user chooses among on the command line and in the Python API, named once (no heavy
imports: the plugin checks options against them before anything is loaded)."""

from __future__ import annotations

DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")
DTYPE_NAMES: tuple[str, ...] = ("float32", "float16", "bfloat16", "auto")  # "auto": the checkpoint's own
CORRECTIONS: tuple[str, ...] = ("holm", "bh")  # --correction (holm is the default)
CONTROLS: tuple[str, ...] = ("init", "shuffle", "none")  # --control (init is the default)
