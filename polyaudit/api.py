"""polyaudit from Python: the same audit as `pytest claims/`, through the same plugin.

    import polyaudit
    result = polyaudit.audit("gpt2", profile="quick")             # a spec, as --model takes
    result = polyaudit.audit(model, tokenizer=tok)                 # an in-memory Hugging Face model
    result = polyaudit.audit(net, probe=(inputs, labels))          # an nn.Module with probe tensors
    result.to_pandas(); result.save_html("audit.html"); result     # (renders in Jupyter)
    polyaudit.compare("base.json", result)                         # a baseline comparison

`audit` runs the claims polyaudit ships (`polyaudit.claims`) in-process with pytest and the polyaudit
plugin, exactly as the command line does (same claims, caches, verdicts and reports); an in-memory
model is handed to the run as a factory (`polyaudit.api:NAME`, see `polyaudit.models.factory`).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polyaudit.errors import PolyauditError

_MEMORY: dict[str, Any] = {}  # in-memory models handed to a run, by factory name


def __getattr__(name: str) -> Any:
    """`polyaudit.api:NAME` as a factory: the in-memory model `audit` registered under NAME."""
    if name in _MEMORY:
        return lambda: _MEMORY[name]
    raise AttributeError(f"module 'polyaudit.api' has no attribute {name!r}")


def _register(model: Any, tokenizer: Any, probe: Any, control: Any, name: str | None) -> str:
    base = re.sub(r"\W+", "_", name or type(model).__name__).strip("_").lower() or "model"
    key = base if base not in _MEMORY else f"{base}_{len(_MEMORY)}"
    entry: dict[str, Any] = {"model": model}
    for k, v in (("tokenizer", tokenizer), ("probe", probe), ("control", control)):
        if v is not None:
            entry[k] = v
    _MEMORY[key] = entry
    return f"polyaudit.api:{key}"


def _flag(name: str, value: Any) -> list[str]:
    if value is None or value is False:
        return []
    return [f"--{name}"] if value is True else [f"--{name}={value}"]


def audit(model: Any, *, claims: Sequence[str] | None = None, probe: Any = None, profile: str = "default",
          control: str = "init", control_twins: int = 3, seed: int = 0, device: str | None = None, dtype: str | None = None,
          correction: str = "holm", tokenizer: Any = None, family: Sequence[str] | None = None,
          cache_dir: str | None = None, use_cache: bool = True, name: str | None = None,
          quiet: bool = True, pytest_args: Sequence[str] = ()) -> AuditResult:
    """Audit `model` (a --model spec string, an in-memory Hugging Face model with its `tokenizer`, or
    an nn.Module / polyaudit Adapter with `probe=(inputs, labels)` tensors) and return the result.

    `claims`: claim ids to run (e.g. ["C1", "C4"]; default all); `probe`: a --probe spec string, or
    the probe tensors of an in-memory module; the other options are the plugin's (see `pytest
    --help`). Raises PolyauditError (one line) when the audit cannot run."""
    import pytest

    if isinstance(model, str):
        spec = model
    else:
        tensors = None if isinstance(probe, str) else probe
        spec = _register(model, tokenizer, tensors, None, name)
    args = ["--pyargs", "polyaudit.claims", f"--model={spec}", f"--profile={profile}", f"--control={control}", f"--control-twins={control_twins}",
            f"--seed={seed}", f"--correction={correction}", "--no-reports", "-p", "no:cacheprovider",
            "-p", "no:randomly"]
    args += _flag("probe", probe if isinstance(probe, str) else None)
    args += _flag("device", device) + _flag("dtype", dtype) + _flag("cache-dir", cache_dir)
    args += [] if use_cache else ["--no-cache"]
    args += [f"--family={f}" for f in family or ()]
    if claims:  # claim files are named test_cN_*.py: -k matches the module names (case-insensitive)
        args += ["-k", " or ".join(f"test_{c.lower()}_" for c in claims)]
    args += list(pytest_args)
    folder = Path(tempfile.mkdtemp(prefix="polyaudit-api-"))
    out = folder / "audit.json"
    log = io.StringIO()
    sink = contextlib.redirect_stdout(log) if quiet else contextlib.nullcontext()
    with sink:
        code = pytest.main([*args, f"--json={out}", "-q" if quiet else "-v",
                            f"--rootdir={_claims_folder()}"])
    if not out.exists():
        tail = " ".join(log.getvalue().strip().splitlines()[-3:])
        raise PolyauditError(f"the audit of {spec} did not run (pytest exit {int(code)}): {tail}")
    from polyaudit.report.load import load_report

    return AuditResult(load_report(out), log=log.getvalue(), exit_code=int(code))


def _claims_folder() -> Path:
    """Where the installed claims live (the repository's claims/ in an editable install)."""
    import importlib.util

    found = importlib.util.find_spec("polyaudit.claims")
    if found is None or not found.origin:
        raise PolyauditError("polyaudit.claims is not installed: reinstall polyaudit")
    return Path(found.origin).parent


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """One DataFrame row: the JSON row's fields, `details` flattened where scalar (`details.k`),
    `control` and `vs_control` flattened (`control.effect`, ...), intervals as lo/hi columns."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "ci" and isinstance(value, Sequence):
            out["ci_lo"], out["ci_hi"] = value
        elif key in ("details", "control", "vs_control", "baseline") and isinstance(value, Mapping):
            for k, v in value.items():
                if k == "ci" and isinstance(v, Sequence) and len(v) == 2:
                    out[f"{key}.ci_lo"], out[f"{key}.ci_hi"] = v
                elif v is None or isinstance(v, (str, int, float, bool)):
                    out[f"{key}.{k}"] = v
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[key] = value
    return out


class AuditResult:
    """An audit's report document (schema polyaudit.report/1), with its rows and renderers."""

    def __init__(self, doc: Mapping[str, Any], log: str = "", exit_code: int = 0) -> None:
        self.doc = dict(doc)
        self.log = log  # what pytest printed
        self.exit_code = exit_code  # pytest's: 0 all PASS/INCONCLUSIVE, 1 a FAIL or ERROR row

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.doc.get("rows", []))

    @property
    def summary(self) -> dict[str, int]:
        return dict(self.doc.get("summary", {}))

    def to_pandas(self) -> Any:
        """One row per claim x model x site; the JSON row fields as columns."""
        import pandas as pd

        return pd.DataFrame([_flatten(r) for r in self.rows])

    def to_json(self, path: str | Path) -> Path:
        from polyaudit.report.document import dumps
        from polyaudit.report.load import sign
        from polyaudit.serial import atomic_write_text

        return atomic_write_text(path, dumps(sign(self.doc)))

    def save_html(self, path: str | Path) -> Path:
        from polyaudit.report.html import render_html
        from polyaudit.serial import atomic_write_text

        return atomic_write_text(path, render_html(self.doc))

    def save_markdown(self, path: str | Path) -> Path:
        from polyaudit.report.markdown import render_markdown
        from polyaudit.serial import atomic_write_text

        return atomic_write_text(path, render_markdown(self.doc))

    def model_card(self) -> str:
        """A model-card section (Markdown) with `model-index` entries (see `polyaudit.report.modelcard`)."""
        from polyaudit.report.modelcard import render_model_card

        return render_model_card(self.doc)

    def _repr_html_(self) -> str:
        from polyaudit.report.html import summary_table

        return summary_table(self.doc)

    def __rich__(self) -> Any:
        from rich.text import Text

        from polyaudit.report.terminal import render_table

        return Text.from_ansi(render_table(self.doc, width=100, color=True))

    def __repr__(self) -> str:
        models = ", ".join(str(m.get("spec")) for m in self.doc.get("models", []))
        return f"<AuditResult {models}: {self.summary}>"


def _doc_of(x: Any) -> Mapping[str, Any]:
    if isinstance(x, AuditResult):
        return x.doc
    if isinstance(x, Mapping):
        return x
    from polyaudit.report.load import load_report

    return load_report(x)


def compare(base: Any, new: Any, *, tolerance: Mapping[str, float] | float | None = None) -> Any:
    """Compare a run with a baseline (paths, report dicts or AuditResults): a DataFrame with one
    line per row (status ok / regressed / new, the drop and its CI), `.attrs["regressed"]` True
    when the new run fails the gate (the `--baseline` rules)."""
    import pandas as pd

    from polyaudit.report.baseline import Baseline, compare_documents, parse_tolerances
    from polyaudit.report.load import file_sha256

    base_doc = _doc_of(base)
    path = base if isinstance(base, (str, Path)) else "baseline"
    baseline = Baseline(path, base_doc, file_sha256(path) if isinstance(base, (str, Path)) else "")
    cli = [] if tolerance is None else (
        [str(tolerance)] if isinstance(tolerance, (int, float)) else [f"{k}={v}" for k, v in tolerance.items()])
    diffs, missing = compare_documents(baseline, _doc_of(new), parse_tolerances(cli))
    frame = pd.DataFrame([_flatten(d.to_json()) for d in diffs])
    frame.attrs["regressed"] = any(d.regressed for d in diffs)
    frame.attrs["missing"] = list(missing)
    return frame

