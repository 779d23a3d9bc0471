"""Fuzzing the readers of JSON reports and baselines with malformed input (hypothesis).

The readers are `report.load.load_report`, `report.baseline.Baseline.load` + `compare_documents`
(what `--baseline` runs inside pytest) and the `polyaudit validate / compare / report` commands.
Properties:
- never a traceback: every input either reads, or is refused with ONE line (PolyauditError; exit 4
  from the command);
- never a silent pass: a baseline that was damaged after it was written (truncated, bit-flipped,
  a value replaced, a key dropped) is refused, so a regressed run can never compare as "ok"; a
  damaged-and-re-signed baseline that still reads gates by the same rules (a row whose baseline
  verdict is PASS and whose new verdict is not is always REGRESSED).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from polyaudit.cli import EXIT_OK, EXIT_REFUSED, EXIT_REGRESSED, main
from polyaudit.errors import PolyauditError
from polyaudit.report.baseline import Baseline, compare_documents, parse_tolerances
from polyaudit.report.document import build_document, dumps
from polyaudit.report.load import load_report, sign
from polyaudit.serial import encode_array

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
RUN = {"created": "20260101T000000Z", "seed": 0, "profile": "quick", "device": "cpu", "versions": {}}


def _doc(effects: dict[str, float], verdicts: dict[str, str] | None = None) -> dict[str, Any]:
    z = np.random.default_rng(0).standard_normal(50)
    rows = []
    for site, effect in effects.items():
        boot = effect + 0.05 * z
        lo, hi = np.percentile(boot, [2.5, 97.5])
        rows.append({"claim": "C4", "claim_version": 1, "test_id": f"C4-alpha-depth[ckpt:{site}]",
                     "model": "ckpt", "site": site, "statistic": "spearman(alpha, layer)", "effect": effect,
                     "ci": [lo, hi], "p": 0.001, "p_adj": 0.002, "n": 400, "predicted": "positive",
                     "verdict": (verdicts or {}).get(site, "PASS"), "notes": "",
                     "details": {"boot_effect": encode_array(boot), "n_boot": 50}, "control": None,
                     "provenance": {"model": {"spec": "./ckpt", "revision": None, "sha256": "0" * 64},
                                    "probe": {"name": "digits", "sha256": "ab" * 32, "n_samples": 400}}})
    return sign(build_document(rows, RUN))


BASE = _doc({"resid": 0.8, "mlp_pre": 0.6})
WORSE = _doc({"resid": 0.2, "mlp_pre": 0.6}, {"resid": "FAIL"})  # a regression on resid
BASE_TEXT = dumps(BASE)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "worse.json").write_text(dumps(WORSE))
    return d


def _read(path: Path, what: str = "report") -> dict[str, Any] | None:
    """load_report: the document, or None when refused with one line. Anything else fails the test."""
    try:
        return load_report(path, what=what, require_integrity=what == "baseline")
    except PolyauditError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return None


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> int:
    code = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    if code == EXIT_REFUSED:
        assert len(err) == 1 and err[0].startswith("polyaudit: error: "), err
    return code


# --- any bytes at all ----------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=2000))
@example(b"")
@example(b"\xff\xfe\x00garbage")
@example(b"NaN")
@example(b"[" * 5000)
@example(b'{"schema": "polyaudit.report/1", "seed": 1' + b"0" * 5000 + b"}")
def test_arbitrary_bytes_never_crash(folder: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    path = folder / "bytes.json"
    path.write_bytes(data)
    assert _read(path) is None
    assert _cli(capsys, "validate", str(path)) == EXIT_REFUSED
    assert _cli(capsys, "compare", str(path), str(folder / "worse.json")) == EXIT_REFUSED


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["NaN", "Infinity", "-inf", "1e999", "PASS", "C4", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(JSON_VALUES)
def test_any_json_value_is_refused_or_read(folder: Path, capsys: pytest.CaptureFixture[str], value: Any) -> None:
    path = folder / "value.json"
    path.write_text(json.dumps(value))
    assert _read(path) is None  # nothing random is a polyaudit report
    assert _cli(capsys, "report", str(path)) == EXIT_REFUSED


# --- damage to a real baseline -------------------------------------------------------------------
def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)
NASTY = st.sampled_from([None, "NaN", "nan", "Infinity", 1e308, -1e308, 10**30, -(10**30), 10**400, 0, -1, 1.5,
                         True, "", "PASS", [], {}, [None, None], [1.0, -1.0], {"dtype": "float32"},
                         "x" * 300]) | JSON_VALUES


def _mutate(doc: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "drop":
        del parent[last]
    else:
        parent[last] = value
    return out


@FUZZ
@given(st.sampled_from(PATHS), st.sampled_from(["replace", "drop"]), NASTY)
def test_a_damaged_baseline_never_passes_silently(folder: Path, capsys: pytest.CaptureFixture[str],
                                                   path: tuple[Any, ...], action: str, value: Any) -> None:
    """Edited after it was written, without re-signing: refused (or, when the edit changed nothing
    that counts, still gates the regressed run). Exit 0 would be a silent pass."""
    damaged = _mutate(BASE, path, action, value)
    if json.dumps(damaged, sort_keys=True, default=str) == json.dumps(BASE, sort_keys=True):
        return  # replaced a value by itself: no damage
    base = folder / "damaged.json"
    base.write_text(json.dumps(damaged, allow_nan=True, default=str))
    code = _cli(capsys, "compare", str(base), str(folder / "worse.json"))
    assert code in (EXIT_REGRESSED, EXIT_REFUSED)
    if code == EXIT_REGRESSED:  # only edits outside the signed payload (the integrity record's notes)
        assert path[0] == "integrity" and path[-1] != "sha256"


@FUZZ
@given(st.sampled_from(PATHS), st.sampled_from(["replace", "drop"]), NASTY)
def test_a_resigned_malformed_baseline_is_refused_or_gates(folder: Path, capsys: pytest.CaptureFixture[str],
                                                           path: tuple[Any, ...], action: str, value: Any) -> None:
    """Malformed and then re-signed (a buggy tool): refused in one line, or read and gated by the
    rules — never a traceback, and a verdict flipped away from PASS is always REGRESSED."""
    if path[0] == "integrity":
        return
    damaged = _mutate(BASE, path, action, value)
    try:
        signed = sign(damaged)
    except (ValueError, TypeError):  # not even serialisable: nothing a reader could meet
        return
    base = folder / "resigned.json"
    base.write_text(dumps(signed))
    doc = _read(base, "baseline")
    code = _cli(capsys, "compare", str(base), str(folder / "worse.json"))
    if doc is None:
        assert code == EXIT_REFUSED
        return
    assert _cli(capsys, "report", str(base), "--md", str(folder / "resigned.md")) == EXIT_OK  # renders
    assert _cli(capsys, "report", str(base)) == EXIT_OK
    try:
        diffs, _missing = compare_documents(Baseline.load(base), WORSE, parse_tolerances())
    except PolyauditError as e:
        assert "\n" not in str(e) and code == EXIT_REFUSED
        return
    by_key = {d.key: d for d in diffs}
    for row in doc["rows"]:
        key = row["test_id"].replace("[ckpt:", "[", 1) if row.get("model") == "ckpt" else None
        if key in by_key and row["verdict"] == "PASS" and by_key[key].new_verdict != "PASS":
            assert by_key[key].regressed, by_key[key]
    assert code == (EXIT_REGRESSED if any(d.regressed for d in diffs) else EXIT_OK)


@FUZZ
@given(st.integers(0, len(BASE_TEXT) - 1), st.integers(0, 7))
def test_truncated_or_bit_flipped_baselines_are_refused(folder: Path, capsys: pytest.CaptureFixture[str],
                                                        at: int, bit: int) -> None:
    base = folder / "cut.json"
    if BASE_TEXT[:at].rstrip() != BASE_TEXT.rstrip():  # cutting a trailing newline damages nothing
        base.write_text(BASE_TEXT[:at])
        assert _read(base, "baseline") is None
        assert _cli(capsys, "compare", str(base), str(folder / "worse.json")) == EXIT_REFUSED
    raw = bytearray(BASE_TEXT.encode())
    raw[at] ^= 1 << bit
    base.write_bytes(bytes(raw))
    doc = _read(base, "baseline")
    code = _cli(capsys, "compare", str(base), str(folder / "worse.json"))
    if doc is None:
        assert code == EXIT_REFUSED
    else:  # the flip hit insignificant bytes (whitespace that stays whitespace) or the integrity notes
        assert code == EXIT_REGRESSED


def test_nonstandard_json_numbers_are_refused(tmp_path: Path) -> None:
    """Python's json reads NaN, Infinity and 1e999 (inf): a report never holds them, so a reader
    refuses them in one line rather than failing later while checking the checksum."""
    for literal in ("NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 5000):
        text = BASE_TEXT.replace('"p": 0.001', f'"p": {literal}', 1)
        assert text != BASE_TEXT
        path = tmp_path / "odd.json"
        path.write_text(text)
        with pytest.raises(PolyauditError) as info:
            load_report(path)
        assert "\n" not in str(info.value) and "number" in str(info.value), str(info.value)
    assert not math.isnan(float(json.loads(BASE_TEXT)["rows"][0]["p"]))
