"""Run-time state of one audit: the models under audit (subjects), their probes and captures, and a
memo for measurements shared by several tests. The pytest plugin builds it (lazily, once a claim is
collected) and keeps it in `config.stash`."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from polyaudit.claimspec import ClaimSpec, attach_control
from polyaudit.errors import PolyauditError
from polyaudit.models.control import Twin
from polyaudit.run.options import RunOptions
from polyaudit.serial import stable_int
from polyaudit.store.root import cache_root
from polyaudit.verdict import Evidence

if TYPE_CHECKING:
    from polyaudit.capture import Capture
    from polyaudit.models.base import LoadedModel, SiteKind
    from polyaudit.probes.base import ProbeSet

T = TypeVar("T")
PARITY_TOKENS = 16  # tokens per sequence (two sequences) of the activation parity check


@dataclass
class _Need:
    kinds: set[str] = field(default_factory=set)
    min_samples: int = 0


class Subject:
    """One model under audit with its probes and activation captures (read-only for claims)."""

    def __init__(self, loaded: LoadedModel, options: RunOptions) -> None:
        from polyaudit.timing import FORWARD_CLOCK

        self.loaded = loaded
        self.options = options
        FORWARD_CLOCK.watch(loaded.adapter.model)  # benchmarks/bench_audit.py: time in forward passes
        self._needs: dict[str | None, _Need] = {}
        self._probes: dict[str | None, ProbeSet] = {}
        self._captures_of: dict[str, dict[str | None, Capture]] = {"model": {}}
        self.state = "model"  # "control<j>" while control twin j's weights are in the model
        self.twins: dict[int, Twin] = {}
        self.parity: dict[str, Any] | None = None

    @property
    def _captures(self) -> dict[str | None, Capture]:
        """The captures of the weights in the model now (the model's, or its twin's)."""
        return self._captures_of[self.state]

    @contextlib.contextmanager
    def as_control(self, kind: str | None = None, index: int = 0) -> Iterator[None]:
        """Control twin `index` stands in for the model for the duration (weights swapped in place,
        its own captures and cache keys; probes shared). Twin j is seeded from --seed and j (twin 0
        from --seed alone)."""
        if index not in self.twins:
            self.twins[index] = Twin(self.loaded, kind or self.options.control, twin_seed(self.options.seed, index),
                                     spill_dir=cache_root(self.options.cache_dir) / "controls")
        twin = self.twins[index]
        with twin.active():
            before = self.loaded.sha256, self.state
            self.loaded.sha256, self.state = twin.sha256, f"control{index}"
            self._captures_of.setdefault(self.state, {})
            try:
                yield
            finally:
                self.loaded.sha256, self.state = before

    @property
    def spec(self) -> str:
        return self.loaded.spec

    @property
    def id(self) -> str:
        return self.loaded.id

    @property
    def adapter(self) -> Any:
        return self.loaded.adapter

    def _probe_key(self, probe: str | None) -> str | None:
        return probe if probe is not None else self.options.probe

    def request(self, kinds: Iterable[str], probe: str | None = None, min_samples: int = 0) -> None:
        """Declare what the selected claims will read, so one forward pass serves them all."""
        need = self._needs.setdefault(self._probe_key(probe), _Need())
        need.kinds.update(kinds)
        need.min_samples = max(need.min_samples, min_samples)

    def probe(self, probe: str | None = None) -> ProbeSet:
        key = self._probe_key(probe)
        if key not in self._probes:
            from polyaudit.probes.registry import build_probe

            need = self._needs.get(key, _Need())
            self._probes[key] = build_probe(
                key, self.loaded, self.options.profile, self.options.seed, min_samples=need.min_samples
            )
        return self._probes[key]

    def capture(self, probe: str | None = None) -> Capture:
        key = self._probe_key(probe)
        if key not in self._captures:
            from polyaudit.capture import Capture
            from polyaudit.store.activations import ActivationCache

            cache = ActivationCache(cache_root(self.options.cache_dir) / "activations") if self.options.use_cache else None
            cap = Capture(self.loaded, self.probe(key), cache=cache,
                          batch_size=self.options.profile.batch_size, progress=self.options.progress)
            available = set(self.adapter.site_kinds)
            kinds = {k for k in self._needs.get(key, _Need()).kinds if k in available}
            if kinds:
                cap.request(sorted(kinds))  # type: ignore[arg-type]
            self._captures[key] = cap
        return self._captures[key]

    def prepare(self) -> None:
        """Build every requested probe now, so a probe that is too small is reported up front, and
        check once that what the adapter reads is what the model computes (`check_parity`)."""
        for key in list(self._needs):
            self.probe(key)
        self.check_parity()

    def check_parity(self) -> dict[str, Any]:
        """Activation parity on a few tokens of a token probe (once per model; see
        `polyaudit.models.parity`): a mismatch raises one line and no claim runs."""
        if self.parity is None:
            from polyaudit.models.parity import check_parity

            probes = [self._probes[k] for k in self._probes if self._probes[k].kind == "tokens"]
            if not probes or self.adapter.input_kind != "tokens":
                self.parity = {"checked": False, "why": "no token probe"}
            else:
                p = probes[0]
                mask = None if p.attention_mask is None else p.attention_mask[:2, :PARITY_TOKENS]
                self.parity = check_parity(self.adapter, p.inputs[:2, :PARITY_TOKENS], mask)
        return self.parity

    def sites(self, kind: SiteKind) -> list[Any]:
        return list(self.adapter.sites(kind))

    def control_info(self) -> dict[str, Any]:
        """What the control twin is (kind, how it was made, its weights' hash)."""
        index = int(self.state.removeprefix("control") or 0) if self.state.startswith("control") else 0
        twin = self.twins.get(index)
        return {} if twin is None else twin.describe()

    def model_info(self) -> dict[str, Any]:
        ad = self.adapter
        return {
            "spec": self.spec,
            "id": self.id,
            "revision": self.loaded.revision,
            "sha256": self.loaded.sha256,
            "family": ad.family,
            "n_layers": ad.n_layers,
            "activation": ad.activation,
            "piecewise_linear": ad.piecewise_linear,
            "dtype": str(ad.dtype).replace("torch.", ""),
            "device": str(ad.device),
            "activation_parity": self.parity,
            **({"pooling": ad.pooling.describe()} if ad.pooling is not None else {}),
        }


def twin_seed(seed: int, index: int) -> int:
    """The seed of control twin `index` (twin 0: --seed itself)."""
    return seed if index == 0 else stable_int(seed, "control-twin", index) % (2**31)


class Runtime:
    """Everything an audit run shares: options, subjects (loaded once), a measurement memo."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.subjects: dict[str, Subject] = {}
        self._memo: dict[Any, Any] = {}
        self.results_from_cache = 0
        self.results_computed = 0

    def subject(self, spec: str) -> Subject:
        if spec not in self.subjects:
            from polyaudit.models.loader import load_model

            loaded = load_model(
                spec, device=self.options.device, dtype=self.options.dtype,
                revision=self.options.revision, trust_remote_code=self.options.trust_remote_code,
                cache_dir=self.options.cache_dir, progress=self.options.progress,
            )
            self.subjects[spec] = Subject(loaded, self.options)
        return self.subjects[spec]

    def measure(self, subject: Any, spec: ClaimSpec, probe: str | None,
                compute: Callable[[], dict[str, Evidence]], code_files: tuple[str, ...] = ()) -> dict[str, Evidence]:
        """A claim's evidence for one model, with the same rows measured on its control twin
        (--control; `attach_control`): each computed once per run, adjusted for multiple comparisons
        as the claim's spec declares, and served from the on-disk results cache on a rerun with the
        same weights, probe, claim version and code, profile, seed and correction. `code_files`:
        source files besides the spec's modules whose code computes it (the claim file)."""

        def both() -> dict[str, Evidence]:
            rows = self._measure_state(subject, spec, probe, compute, code_files)
            if self.options.control == "none" or not hasattr(subject, "as_control"):
                return rows
            twins: list[dict[str, Evidence]] = []
            how: dict[str, Any] = {}
            for index in range(max(1, self.options.control_twins)):
                try:
                    with subject.as_control(index=index):
                        twins.append(self._measure_state(subject, spec, probe, compute, code_files))
                        how = how or subject.control_info()
                except PolyauditError as e:  # the twin could not be measured: a finding about the twin only
                    how = how or {"kind": self.options.control, **subject.control_info()}
                    twins.append({k: dataclasses.replace(ev, error=f"control twin: {e}") for k, ev in rows.items()})
                    break
            return attach_control(rows, twins, how.get("kind", self.options.control), how, self.options.profile.alpha)

        return self.memo(("measure", spec.id, subject.spec, probe), both)

    def _measure_state(self, subject: Any, spec: ClaimSpec, probe: str | None,
                       compute: Callable[[], dict[str, Evidence]], code_files: tuple[str, ...]) -> dict[str, Evidence]:
        """The rows of the weights in the model now (the model's or its twin's)."""
        from polyaudit.store.results import (
            code_digest,
            load_or_compute,
            profile_fields,
            results_key,
        )
        from polyaudit.version import __version__

        def adjusted() -> dict[str, Evidence]:
            try:
                return spec.adjust(compute(), self.options.correction, self.options.profile.alpha)
            except PolyauditError as e:  # the one boundary where a claim's errors get their context
                raise e.with_context(claim=spec.id, model=subject.id) from e

        def run() -> dict[str, Evidence]:
            root = cache_root(self.options.cache_dir) / "results" if self.options.use_cache else None
            key = results_key(model=subject.loaded.sha256, probe=subject.probe(probe).digest, claim=spec.id,
                              version=spec.version, code=code_digest(spec.modules, code_files),
                              profile=profile_fields(self.options.profile), seed=self.options.seed,
                              polyaudit=__version__, correction=self.options.correction,
                              # how the model is read: its capabilities (an output head or not), a pooling
                              reading=[subject.adapter.describe(), str(subject.adapter.capabilities)])
            evidence, hit = load_or_compute(root, key, adjusted)
            if hit:
                self.results_from_cache += 1
            else:
                self.results_computed += 1
            return evidence

        return self.memo(("measure-state", spec.id, subject.spec, probe, getattr(subject, "state", "model")), run)

    def cache_summary(self) -> str | None:
        """One line for the terminal: what came from the caches and what was computed."""
        if not self.subjects:
            return None
        passes = sum(c.stats.n_forward_passes for s in self.subjects.values() for c in s._captures.values())
        return (f"{self.results_computed} claim measurement(s) computed, {self.results_from_cache} served "
                f"from the results cache; {passes} forward pass(es) over probes")

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """Compute once per run (e.g. a claim's measurement over all its sites)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def rng(self, *keys: object) -> np.random.Generator:
        """A generator seeded from --seed and the keys (claim, site, ...): same seed, same numbers.
        Claims leave the model out of the keys: every model (and its control twins) meets the same
        draws, so a checkpoint's numbers do not depend on the folder it is saved in, and two
        checkpoints compared side by side differ by their weights, not by their draws."""
        return np.random.default_rng([self.options.seed, stable_int(*keys)])
