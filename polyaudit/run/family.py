"""Loaded dropout families (claim C5): a `FamilySubject` stands where a model under audit stands (id,
spec, probe, provenance), so family rows reach the report like every other row; its members are
ordinary run-time subjects, with their own probes and cached captures. Parsing `--family` is
`polyaudit.models.family`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from polyaudit.errors import PolyauditError
from polyaudit.models.family import (
    NONE_PREFIX,
    OF_PREFIX,
    FamilySpec,
    Member,
    implicit_family,
    parse_family,
)
from polyaudit.probes.base import ProbeSet
from polyaudit.run.runtime import Runtime, Subject


def family_site_names(fam: FamilySpec, runtime: Runtime) -> list[str]:
    """Names of the unit sites (one per layer) of the family's architecture, known at collection
    time without training: zoo families build the untrained network; others load the first member."""
    import torch

    from polyaudit.interventions.unit_dropout import unit_site_kind

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
        self.spec = "family:" + fam.text
        self.id = fam.id if anchor is None else anchor.id
        self.loaded = FamilyProvenance(self.spec, self._hash())
        self.state = "model"

    def _hash(self) -> str:
        h = hashlib.sha256()
        for m, sub in self.members:
            h.update(f"{m.rate}|{sub.loaded.sha256}\n".encode())
        return h.hexdigest()

    @contextlib.contextmanager
    def as_control(self, index: int = 0) -> Iterator[None]:
        """The family's control `index`: its members untrained (each member's `init` twin `index`),
        for the duration."""
        with contextlib.ExitStack() as stack:
            for sub in {id(s): s for _, s in self.members}.values():
                stack.enter_context(sub.as_control(kind="init", index=index))
            before = self.loaded, self.state
            self.loaded, self.state = FamilyProvenance(self.spec, self._hash()), f"control{index}"
            try:
                yield
            finally:
                self.loaded, self.state = before

    def control_info(self) -> dict[str, Any]:
        return {"kind": "init", "how": "the family's members untrained (each its recipe or from_config, untrained)",
                "sha256": self._hash() if self.state.startswith("control") else None}

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
    from polyaudit.run.runtime import Subject

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
