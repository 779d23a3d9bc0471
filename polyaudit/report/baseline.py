"""Baselines: compare every row of a run with a stored report and gate regressions.

A row regresses when
- its verdict flips away from PASS (PASS -> FAIL / INCONCLUSIVE / ERROR / SKIPPED), or
- its effect drops, in the predicted direction, by more than the claim's tolerance with the whole
  95% CI of the drop above the tolerance (so noise alone never fails a checkpoint).

The CI of the drop is PAIRED when both rows carry `details.boot_effect` (bootstrap replicates of the
effect, encoded with `rows.encode_array`) drawn from the same probe (same sha256), the same seed, the
same number of replicates and the same n (and the same `details.boot_units` where a claim names the
units it resampled): then replicate b of both runs used the same resample of the same samples, and
the CI is the percentile interval of the replicate-wise differences. Otherwise it is
UNPAIRED: a normal approximation with the two runs treated as independent, each standard error
read off its 95% CI. The diff says which.

Rows pair on a model-independent key (`rows.test_id` with the model id taken out), so a baseline
of `--model=./old-ckpt` gates `--model=./new-ckpt`. With several models, same ids pair; otherwise
one remaining model on each side pairs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polyaudit.errors import PolyauditError
from polyaudit.report.format import fmt_ci, fmt_num

DEFAULT_TOLERANCE = 0.1
Z95 = 1.959963984540054
MIN_PAIRED_REPLICATES = 20


@dataclass(frozen=True)
class Tolerances:
    """How far (in the claim's effect units) an effect may drop before the gate fails a row."""

    default: float = DEFAULT_TOLERANCE
    per_claim: Mapping[str, float] = field(default_factory=dict)

    def for_claim(self, claim: str) -> float:
        return float(self.per_claim.get(claim, self.default))

    def to_json(self) -> dict[str, Any]:
        return {"default": self.default, **dict(sorted(self.per_claim.items()))}


def _tolerance_value(text: Any, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PolyauditError(f"tolerance {text!r} in {where} is not a number: use e.g. 0.1 or C4=0.15") from None
    if not math.isfinite(value) or value < 0:
        raise PolyauditError(f"tolerance {text!r} in {where} must be a finite number >= 0")
    return value


def read_pyproject(path: str | Path | None) -> dict[str, Any]:
    """`[tool.polyaudit]` of a pyproject.toml ({} when there is none)."""
    if path is None or not Path(path).is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PolyauditError(f"cannot read [tool.polyaudit] from {path}: {e}") from None
    section = data.get("tool", {}).get("polyaudit", {})
    return section if isinstance(section, dict) else {}


def parse_tolerances(cli: Sequence[str] = (), settings: Mapping[str, Any] | None = None,
                     where: str = "pyproject.toml") -> Tolerances:
    """Tolerances from `[tool.polyaudit.tolerance]` (`default = 0.1`, `C4 = 0.15`, ...), overridden by
    command-line values `VALUE` (every claim) or `CLAIM=VALUE` (one claim)."""
    default = DEFAULT_TOLERANCE
    per: dict[str, float] = {}
    table = (settings or {}).get("tolerance", {})
    if isinstance(table, (int, float)) and not isinstance(table, bool):
        table = {"default": table}
    if not isinstance(table, Mapping):
        raise PolyauditError(f"[tool.polyaudit] tolerance in {where} must be a table like "
                             "{default = 0.1, C4 = 0.15}")
    for key, value in table.items():
        v = _tolerance_value(value, f"[tool.polyaudit.tolerance] {key} of {where}")
        if key == "default":
            default = v
        else:
            per[str(key)] = v
    for item in cli:
        claim, sep, value = str(item).rpartition("=")
        v = _tolerance_value(value, "--tolerance")
        if sep:
            if not claim.strip():
                raise PolyauditError(f"--tolerance {item!r}: name the claim before '=', e.g. C4=0.15")
            per[claim.strip()] = v
        else:
            default = v
    return Tolerances(default, per)


def row_key(row: Mapping[str, Any]) -> str:
    """Model-independent identity of a row: `C4-alpha-depth[gpt2:resid]` -> `C4-alpha-depth[resid]`."""
    test_id, model = str(row.get("test_id", "")), str(row.get("model", ""))
    if model and f"[{model}:" in test_id:
        return test_id.replace(f"[{model}:", "[", 1)
    if model and f"[{model}-" in test_id:
        return test_id.replace(f"[{model}-", "[", 1)
    if model and f"[{model}]" in test_id:
        return test_id.replace(f"[{model}]", "", 1)
    return test_id.replace(model, "*", 1) if model else test_id


def control_kind(row: Mapping[str, Any]) -> str:
    """The control twin a row was measured against (`none` without one)."""
    control = row.get("control")
    return str(control.get("kind")) if isinstance(control, Mapping) and control.get("kind") else "none"


def pair_key(row: Mapping[str, Any]) -> str:
    """What pairs a row with a baseline row: claim, check and site (`row_key`) and the control kind."""
    return f"{row_key(row)}|control={control_kind(row)}"


def pair_models(base: Sequence[str], new: Sequence[str]) -> dict[str, str | None]:
    """new model id -> the baseline model id its rows compare with (None: no baseline)."""
    out: dict[str, str | None] = {m: (m if m in base else None) for m in new}
    left_new = [m for m in new if out[m] is None]
    left_base = [m for m in base if m not in new]
    if len(left_new) == 1 and len(left_base) == 1:
        out[left_new[0]] = left_base[0]
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _direction(row: Mapping[str, Any]) -> float:
    predicted = row.get("predicted")
    if predicted == "positive":
        return 1.0
    if predicted == "negative":
        return -1.0
    effect = row.get("effect")
    return -1.0 if isinstance(effect, (int, float)) and math.isfinite(effect) and effect < 0 else 1.0


def probe_sha256(row: Mapping[str, Any]) -> str | None:
    """The probe a row was measured on: `probe_sha256` in a report, `provenance` in a live row."""
    sha = row.get("probe_sha256") or ((row.get("provenance") or {}).get("probe") or {}).get("sha256")
    return None if sha is None else str(sha)


def _same_units(base: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Claims whose bootstrap units depend on the model (e.g. the paths that cross a boundary) may
    name them: `details.boot_units` (a digest); rows pair only when both name the same units."""
    a, b = ((r.get("details") or {}).get("boot_units") for r in (base, new))
    return a is None or b is None or a == b


def _replicates(row: Mapping[str, Any]) -> np.ndarray | None:
    from polyaudit.serial import decode_array

    enc = (row.get("details") or {}).get("boot_effect")
    if not isinstance(enc, Mapping):
        return None
    try:
        return np.asarray(decode_array(enc), dtype=np.float64).ravel()
    except ValueError:
        return None


@dataclass(frozen=True)
class RowDiff:
    key: str
    status: str  # "ok", "regressed" or "new"
    claim: str
    model: str
    base_model: str | None = None
    reasons: tuple[str, ...] = ()
    base_verdict: str | None = None
    new_verdict: str | None = None
    base_effect: float | None = None
    new_effect: float | None = None
    base_ci: tuple[Any, Any] | None = None
    new_ci: tuple[Any, Any] | None = None
    drop: float | None = None
    drop_ci: tuple[float, float] | None = None
    method: str = "none"  # "paired", "unpaired" or "none"
    n_pairs: int = 0
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def regressed(self) -> bool:
        return self.status == "regressed"

    def to_json(self) -> dict[str, Any]:
        from polyaudit.serial import jsonable

        return jsonable({
            "key": self.key, "status": self.status, "reasons": list(self.reasons),
            "base_model": self.base_model, "base_verdict": self.base_verdict,
            "base_effect": self.base_effect, "base_ci": self.base_ci, "drop": self.drop,
            "drop_ci": self.drop_ci, "method": self.method, "n_pairs": self.n_pairs,
            "tolerance": self.tolerance,
        })

    def drop_text(self) -> str:
        if self.drop is None:
            return "no drop computed (an effect is missing)"
        if self.drop_ci is None:
            return f"drop {fmt_num(self.drop)} (no CI: a 95% CI is missing)"
        how = (f"paired over {self.n_pairs} bootstrap replicates" if self.method == "paired"
               else "unpaired: normal approximation from the two CIs")
        return f"drop {fmt_num(self.drop)}, 95% CI {fmt_ci(self.drop_ci)} ({how})"

    def paragraph(self, source: str = "the baseline") -> str:
        """The readable one-paragraph diff shown on a regressed test."""
        if self.status == "new":
            return f"{self.key}: no row in {source} to compare with."
        vs = f"model {self.model} vs {self.base_model}" if self.base_model != self.model else f"model {self.model}"
        lines = [
            f"REGRESSED against {source}: {self.key} ({vs})" if self.regressed
            else f"unchanged against {source}: {self.key} ({vs})",
            f"  verdict: {self.base_verdict} -> {self.new_verdict}"
            + ("  (flipped away from PASS)" if "verdict" in self.reasons else ""),
            f"  effect:  {fmt_num(self.base_effect)} {fmt_ci(self.base_ci)} -> "
            f"{fmt_num(self.new_effect)} {fmt_ci(self.new_ci)}",
            f"  {self.drop_text()}; tolerance {fmt_num(self.tolerance)} for {self.claim}"
            + ("  (the whole CI of the drop lies above the tolerance)" if "effect" in self.reasons else ""),
        ]
        return "\n".join(lines)


def _ci95(row: Mapping[str, Any], shown: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row's unadjusted 95% CI: `details.ci_95` where the shown CI is at an adjusted level."""
    details = row.get("details")
    ci = details.get("ci_95") if isinstance(details, Mapping) else None
    return tuple(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else shown


def compare_rows(base: Mapping[str, Any] | None, new: Mapping[str, Any], tolerance: float, *,
                 same_seed: bool = True) -> RowDiff:
    claim, model = str(new.get("claim")), str(new.get("model"))
    new_ci = tuple(new.get("ci") or (None, None))
    if base is None:
        return RowDiff(row_key(new), "new", claim, model, new_verdict=new.get("verdict"),
                       new_effect=new.get("effect"), new_ci=new_ci, tolerance=tolerance)
    reasons: list[str] = []
    if base.get("verdict") == "PASS" and new.get("verdict") != "PASS":
        reasons.append("verdict")
    be, ne = base.get("effect"), new.get("effect")
    base_ci = tuple(base.get("ci") or (None, None))
    drop: float | None = None
    drop_ci: tuple[float, float] | None = None
    method, n_pairs = "none", 0
    if isinstance(be, (int, float)) and isinstance(ne, (int, float)) and _finite(be) and _finite(ne):
        sign = _direction(base)
        drop = sign * (float(be) - float(ne)) + 0.0  # + 0.0: no "-0"
        rb, rn = _replicates(base), _replicates(new)
        pairable = (same_seed and rb is not None and rn is not None and rb.size == rn.size
                    and probe_sha256(base) is not None and probe_sha256(base) == probe_sha256(new)
                    and base.get("n") == new.get("n") and _same_units(base, new))
        if pairable:
            assert rb is not None and rn is not None
            d = sign * (rb - rn)
            d = d[np.isfinite(d)]
            if d.size >= MIN_PAIRED_REPLICATES:
                lo, hi = np.percentile(d, [2.5, 97.5])
                drop_ci, method, n_pairs = (float(lo) + 0.0, float(hi) + 0.0), "paired", int(d.size)
        b95, n95 = _ci95(base, base_ci), _ci95(new, new_ci)  # the unadjusted 95% CIs (see verdict rules)
        if drop_ci is None and all(_finite(x) for x in (*b95, *n95)):
            se_b = (float(b95[1]) - float(b95[0])) / (2 * Z95)
            se_n = (float(n95[1]) - float(n95[0])) / (2 * Z95)
            half = Z95 * math.hypot(se_b, se_n)
            drop_ci, method = (drop - half, drop + half), "unpaired"
        if drop_ci is not None and drop_ci[0] > tolerance:
            reasons.append("effect")
    return RowDiff(
        row_key(new), "regressed" if reasons else "ok", claim, model, base_model=str(base.get("model")),
        reasons=tuple(reasons), base_verdict=base.get("verdict"), new_verdict=new.get("verdict"),
        base_effect=be, new_effect=ne, base_ci=base_ci, new_ci=new_ci, drop=drop,
        drop_ci=drop_ci, method=method, n_pairs=n_pairs, tolerance=tolerance,
    )


class Baseline:
    """A stored report used as the reference of a run (loaded, validated and checksum-verified)."""

    def __init__(self, path: str | Path, doc: Mapping[str, Any], sha256: str) -> None:
        self.path = str(path)
        self.doc = doc
        self.sha256 = sha256
        self.models = list(dict.fromkeys(str(r.get("model")) for r in doc.get("rows", [])))
        self._rows: dict[tuple[str, str], Mapping[str, Any]] = {
            (str(r.get("model")), pair_key(r)): r for r in doc.get("rows", [])
        }

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        from polyaudit.report.load import file_sha256, load_report

        doc = load_report(path, what="baseline", require_integrity=True)
        if doc.get("rows") and not any("control" in r for r in doc["rows"]):
            raise PolyauditError(
                f"baseline {Path(path).name} was written before rows carried their control twin (it cannot "
                "pair rows on claim, site and control kind): save it again with this version, "
                "--save-baseline FILE --replace-baseline")
        return cls(path, doc, file_sha256(path))

    @property
    def label(self) -> str:
        return f"baseline {Path(self.path).name}"

    def rows_of(self, base_model: str | None) -> list[Mapping[str, Any]]:
        return [r for (m, _), r in self._rows.items() if m == base_model]

    def row_for(self, new_row: Mapping[str, Any], pairing: Mapping[str, str | None]) -> Mapping[str, Any] | None:
        base_model = pairing.get(str(new_row.get("model")))
        return None if base_model is None else self._rows.get((base_model, pair_key(new_row)))

    def check_compatible(self, claim: str, version: int, probe: Mapping[str, Any] | None,
                         base_model: str | None, control: str | None = None) -> None:
        """Refuse (one line) when this run's claim version, probe or control kind differs from the
        baseline's (rows of another control kind would pair with nothing and never fail)."""
        rows = [r for r in self.rows_of(base_model) if r.get("claim") == claim]
        if not rows:
            return
        old_control = self.doc.get("control") or "none"  # the run's --control (rows: their twin's kind)
        if control is not None and control != old_control:
            raise PolyauditError(
                f"{self.label} was measured with --control={old_control}, this run uses --control={control}: "
                "rows pair on claim, site and control kind; use the baseline's --control, or save a new "
                "baseline with --save-baseline")
        old_versions = sorted({int(r.get("claim_version", 0)) for r in rows})
        if old_versions != [int(version)]:
            raise PolyauditError(
                f"{self.label} measured {claim} version {'/'.join(map(str, old_versions))}, this run "
                f"has version {version}: the numbers are not comparable; save a new baseline with "
                "--save-baseline")
        new_sha = (probe or {}).get("sha256")
        old_shas = {probe_sha256(r) for r in rows} - {None}
        if new_sha and old_shas and new_sha not in old_shas:
            old = next(iter(old_shas))
            old_name = next((p.get("name") for p in self.doc.get("probes", []) if p.get("sha256") == old), "?")
            raise PolyauditError(
                f"{self.label} was measured on probe {old_name} (sha256 {str(old)[:12]}) but this run "
                f"uses probe {(probe or {}).get('name')} (sha256 {str(new_sha)[:12]}) for {claim}: use the "
                "baseline's --probe, --profile and --seed, or save a new baseline with --save-baseline")

    def compare(self, new_row: Mapping[str, Any], pairing: Mapping[str, str | None], seed: Any,
                tolerances: Tolerances) -> RowDiff:
        base = self.row_for(new_row, pairing)
        tol = tolerances.for_claim(str(new_row.get("claim")))
        return compare_rows(base, new_row, tol, same_seed=seed == self.doc.get("seed"))

    def missing(self, new_rows: Sequence[Mapping[str, Any]], pairing: Mapping[str, str | None]) -> list[str]:
        """Keys of baseline rows (of the paired models) that this run did not produce."""
        seen = {(pairing.get(str(r.get("model"))), pair_key(r)) for r in new_rows}
        used = {b for b in pairing.values() if b is not None}
        return [k for (m, k) in self._rows if m in used and (m, k) not in seen]

    def describe(self, tolerances: Tolerances, missing: Sequence[str] = ()) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "created": self.doc.get("created"),
                "models": [m.get("spec") for m in self.doc.get("models", [])],
                "tolerances": tolerances.to_json(), "missing": list(missing)}


def compare_documents(base: Baseline, new_doc: Mapping[str, Any], tolerances: Tolerances) -> tuple[list[RowDiff], list[str]]:
    """Every row of `new_doc` against the baseline (refusing other claim versions or probes)."""
    rows = list(new_doc.get("rows", []))
    new_models = list(dict.fromkeys(str(r.get("model")) for r in rows))
    pairing = pair_models(base.models, new_models)
    probes = {p.get("sha256"): p for p in new_doc.get("probes", [])}
    for r in rows:
        sha = r.get("probe_sha256")
        probe = probes.get(sha, {"sha256": sha, "name": "?"}) if sha else None
        base.check_compatible(str(r.get("claim")), int(r.get("claim_version", 0)), probe,
                              pairing.get(str(r.get("model"))), new_doc.get("control") or "none")
    diffs = [base.compare(r, pairing, new_doc.get("seed"), tolerances) for r in rows]
    return diffs, base.missing(rows, pairing)
