"""The options of one audit run (`RunOptions`) and the built-in default models. Light on purpose:
the pytest plugin builds these before it knows whether any claim will run."""

from __future__ import annotations

from dataclasses import dataclass, field

from polyaudit.profiles import PROFILES, Profile

DEFAULT_MODEL = "zoo:mlp-digits"
# `pytest claims/` audits both an MLP and a CNN. The CNN is read at every position of its 8x8 maps
# (pos=all): at the centre alone its first layer sees 3 x 3 pixels and the most-active-neuron
# baseline of C1 degenerates (one channel wins for 60% of the images), an ERROR row, not a verdict.
DEFAULT_MODELS = (DEFAULT_MODEL, "zoo:cnn-digits?pos=all")


@dataclass(frozen=True)
class RunOptions:
    models: tuple[str, ...] = DEFAULT_MODELS
    probe: str | None = None
    device: str = "cpu"
    dtype: str | None = None
    seed: int = 0
    profile: Profile = field(default_factory=lambda: PROFILES["default"])
    json_path: str | None = None
    report_dir: str | None = "reports"
    strict: bool = False
    revision: str | None = None
    trust_remote_code: bool = False
    cache_dir: str | None = None
    use_cache: bool = True
    progress: bool = False
    families: tuple[str, ...] = ()  # --family values (C5 dropout families)
    correction: str = "holm"  # --correction: multiple-comparison adjustment across a claim's rows (holm, bh)
    control: str = "init"  # --control: the twin every row is also measured on (init, shuffle, none)
    control_twins: int = 3  # --control-twins: independent twins (the spread of untrained draws)
