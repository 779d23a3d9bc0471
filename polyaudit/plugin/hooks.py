"""The polyaudit pytest plugin: options, hooks and fixtures only (implementations import lazily).

    pytest claims/                        # audit the built-in default model (zoo:mlp-digits)
    pytest claims/ --model=gpt2           # audit GPT-2 through transformers
    pytest claims/ --model=./ckpt --json=out.json

Verdicts map to pytest outcomes: PASS passes, FAIL fails, INCONCLUSIVE is reported as its own
category ("I", "inconclusive"; fails under --strict), ERROR errors, a claim that does not apply is
skipped with the reason. Report rows travel in `report.user_properties` (so they survive
pytest-xdist and land in JUnit XML); the recorder lives in `config.stash`.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

from polyaudit.errors import PolyauditError
from polyaudit.plugin.state import (
    CACHE_CAP,
    FAMILY_ERROR,
    GATE,
    OPTIONS,
    RECORDER,
    ROW_KEY,
    RUNTIME,
    ClaimInconclusive,
    ClaimOutcome,
    row_of,
    runtime_of,
)
from polyaudit.probes.kinds import probe_help

OPT_MODEL = "--model"
OPT_FAMILY = "--family"
OPT_PROBE = "--probe"
OPT_DEVICE = "--device"
OPT_DTYPE = "--dtype"
OPT_SEED = "--seed"
OPT_PROFILE = "--profile"
OPT_JSON = "--json"
OPT_REPORT_DIR = "--report-dir"
OPT_NO_REPORTS = "--no-reports"
OPT_STRICT = "--strict-verdicts"  # pytest owns `--strict` (strict mode); polyaudit honours it too
OPT_REVISION = "--revision"
OPT_TRUST = "--trust-remote-code"
OPT_CACHE_DIR = "--cache-dir"
OPT_NO_CACHE = "--no-cache"
OPT_MD = "--md"
OPT_HTML = "--html"
OPT_BASELINE = "--baseline"
OPT_SAVE_BASELINE = "--save-baseline"
OPT_REPLACE_BASELINE = "--replace-baseline"
OPT_TOLERANCE = "--tolerance"
OPT_CORRECTION = "--correction"
OPT_CACHE_MAX_GB = "--cache-max-gb"
OPT_CONTROL = "--control"

def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("polyaudit", "polyaudit: interpretability claims as tests")
    g.addoption(OPT_MODEL, action="append", dest="polyaudit_models", metavar="SPEC", default=None,
                help="model to audit (repeatable): HF hub id, local HF dir, zoo:NAME[?k=v], or "
                     "package.module:factory. Default: zoo:mlp-digits and zoo:cnn-digits?pos=all.")
    g.addoption(OPT_FAMILY, action="append", dest="polyaudit_families", metavar="FAMILY", default=None,
                help="dropout family for C5 (repeatable): zoo:NAME[?rates=0,0.4,0.8&seeds=N&k=v] or "
                     "RATE=SPEC,RATE=SPEC,... Default: the family of each zoo --model.")
    g.addoption(OPT_PROBE, dest="polyaudit_probe", metavar="SPEC", default=None,
                help=f"probe set: {probe_help()}. Default: the model's own")
    g.addoption(OPT_DEVICE, dest="polyaudit_device", default="cpu", help="cpu, cuda or auto (default cpu)")
    g.addoption(OPT_DTYPE, dest="polyaudit_dtype", default=None,
                help="float32, float16, bfloat16 or auto (default: the checkpoint's own)")
    g.addoption(OPT_SEED, dest="polyaudit_seed", default="0", help="seed for every random choice (default 0)")
    g.addoption(OPT_PROFILE, dest="polyaudit_profile", default="default",
                help="sample sizes and bootstrap counts: quick, default or paper")
    g.addoption(OPT_CORRECTION, dest="polyaudit_correction", metavar="METHOD", default="holm",
                help="multiple-comparison adjustment across a claim's layers/sites, whose adjusted p the "
                     "verdict uses: holm (default, family-wise error) or bh (Benjamini-Hochberg, false "
                     "discovery rate)")
    g.addoption(OPT_CONTROL, dest="polyaudit_control", metavar="KIND", default="init",
                help="measure every row on a control twin too and say whether the effect is learned, "
                     "architectural or absent: init (default: the same architecture untrained), shuffle "
                     "(the trained weights with each tensor's entries permuted) or none")
    g.addoption("--control-twins", dest="polyaudit_control_twins", metavar="N", default="3",
                help="how many independent control twins (default 3): 'learned' needs the model beyond "
                     "the spread of untrained draws, which one twin cannot measure; each twin costs one "
                     "more measurement of every claim")
    g.addoption(OPT_JSON, dest="polyaudit_json", metavar="PATH", default=None,
                help="also write the JSON report to exactly PATH")
    g.addoption(OPT_REPORT_DIR, dest="polyaudit_report_dir", metavar="DIR", default="reports",
                help="folder for reports/<model>/<timestamp>.{json,md} (default: reports)")
    g.addoption(OPT_NO_REPORTS, dest="polyaudit_no_reports", action="store_true",
                help="do not write the default reports/<model>/ files")
    g.addoption(OPT_STRICT, dest="polyaudit_strict", action="store_true",
                help="INCONCLUSIVE verdicts fail the run (pytest's own --strict implies it)")
    g.addoption(OPT_REVISION, dest="polyaudit_revision", default=None, help="hub revision (branch, tag or commit)")
    g.addoption(OPT_TRUST, dest="polyaudit_trust_remote_code", action="store_true",
                help="allow a hub model's own code to run (off unless given)")
    g.addoption(OPT_CACHE_DIR, dest="polyaudit_cache_dir", default=None,
                help="activation and zoo cache (default $POLYAUDIT_CACHE or ~/.cache/polyaudit)")
    g.addoption(OPT_NO_CACHE, dest="polyaudit_no_cache", action="store_true",
                help="do not read or write the activation cache")
    g.addoption(OPT_CACHE_MAX_GB, dest="polyaudit_cache_max_gb", metavar="GB", default=None,
                help="cap the cache folder at GB gigabytes: least recently used entries are evicted "
                     "after the run (default $POLYAUDIT_CACHE_MAX_GB, else no cap)")
    g.addoption(*_names(OPT_MD, "pytest_md"), dest="polyaudit_md", metavar="PATH", default=None,
                help="also write the Markdown report to exactly PATH")
    g.addoption(*_names(OPT_HTML, "pytest_html"), dest="polyaudit_html", metavar="PATH", default=None,
                help="also write the self-contained HTML report (with plots) to exactly PATH")
    g.addoption(OPT_BASELINE, dest="polyaudit_baseline", metavar="FILE", default=None,
                help="gate against a JSON report of an earlier run (same probe and claim versions): a "
                     "verdict flipping away from PASS, or an effect dropping beyond the tolerance, fails")
    g.addoption(OPT_SAVE_BASELINE, dest="polyaudit_save_baseline", metavar="FILE", default=None,
                help="write this run's JSON report as a baseline to FILE (never overwrites silently)")
    g.addoption(OPT_REPLACE_BASELINE, dest="polyaudit_replace_baseline", action="store_true",
                help="let --save-baseline replace an existing FILE")
    g.addoption(OPT_TOLERANCE, dest="polyaudit_tolerance", action="append", metavar="[CLAIM=]VALUE",
                default=None, help="how far an effect may drop against --baseline (repeatable; VALUE for "
                "every claim, CLAIM=VALUE for one; default from [tool.polyaudit.tolerance], else 0.1)")


def _names(name: str, other_plugin: str) -> tuple[str, ...]:
    """`--html` and `--polyaudit-html`; only the long name when the plugin that owns the short one
    (pytest-html, pytest-md) is installed, so the two never collide."""
    import importlib.util

    long_name = "--polyaudit-" + name.lstrip("-")
    return (long_name,) if importlib.util.find_spec(other_plugin) is not None else (name, long_name)


def _options(config: pytest.Config) -> Any:
    from polyaudit.choices import CONTROLS, CORRECTIONS, DEVICES, DTYPE_NAMES
    from polyaudit.profiles import get_profile
    from polyaudit.progress import progress_allowed
    from polyaudit.run.options import DEFAULT_MODELS, RunOptions

    o = config.option
    seed_txt = str(o.polyaudit_seed)
    if not seed_txt.lstrip("-").isdigit():
        raise pytest.UsageError(f"--seed must be an integer, got {seed_txt!r}")
    if o.polyaudit_device not in DEVICES:
        raise pytest.UsageError(f"unknown device {o.polyaudit_device!r}: use one of {', '.join(DEVICES)}")
    if o.polyaudit_dtype is not None and o.polyaudit_dtype not in DTYPE_NAMES:
        raise pytest.UsageError(f"unknown dtype {o.polyaudit_dtype!r}: use one of {', '.join(DTYPE_NAMES)}")
    try:
        profile = get_profile(o.polyaudit_profile)
    except PolyauditError as e:
        raise pytest.UsageError(str(e)) from None
    if o.polyaudit_correction not in CORRECTIONS:
        raise pytest.UsageError(f"unknown correction {o.polyaudit_correction!r}: use one of "
                                f"{', '.join(CORRECTIONS)} (holm: family-wise error; bh: false discovery rate)")
    if o.polyaudit_control not in CONTROLS:
        raise pytest.UsageError(f"unknown control {o.polyaudit_control!r}: use one of {', '.join(CONTROLS)} "
                                "(init: untrained twin; shuffle: permuted weights; none)")
    twins_txt = str(o.polyaudit_control_twins)
    if not twins_txt.isdigit() or int(twins_txt) < 1:
        raise pytest.UsageError(f"--control-twins must be a whole number >= 1, got {twins_txt!r}")
    models = tuple(dict.fromkeys(o.polyaudit_models or DEFAULT_MODELS))
    families = tuple(dict.fromkeys(o.polyaudit_families or []))
    try:
        from polyaudit.models.family import parse_family

        families = tuple(parse_family(f).text for f in families)
    except PolyauditError as e:
        raise pytest.UsageError(str(e)) from None
    verbose = config.get_verbosity() if hasattr(config, "get_verbosity") else config.option.verbose
    return RunOptions(
        models=models, probe=o.polyaudit_probe, device=o.polyaudit_device, dtype=o.polyaudit_dtype,
        seed=int(seed_txt), profile=profile, json_path=o.polyaudit_json,
        report_dir=None if o.polyaudit_no_reports else o.polyaudit_report_dir,
        strict=o.polyaudit_strict or bool(getattr(o, "strict", False)), revision=o.polyaudit_revision,
        trust_remote_code=o.polyaudit_trust_remote_code, cache_dir=o.polyaudit_cache_dir,
        use_cache=not o.polyaudit_no_cache, progress=verbose >= 0 and progress_allowed(),
        families=families, correction=o.polyaudit_correction, control=o.polyaudit_control,
        control_twins=int(twins_txt),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Check the options and get the recorder and the baseline gate ready. Dormant otherwise: the
    run's runtime (and torch, transformers, scipy with it) is built only once a claim is collected
    (`runtime_of`), so a pytest run of a project that merely has polyaudit installed pays nothing."""
    config.addinivalue_line(
        "markers",
        "claim(spec, check=NAME): a polyaudit claim test; `spec` is the claim's ClaimSpec "
        "(polyaudit.claimspec), `check` one of its checks; the plugin captures the check's site kinds "
        "once per model and records the verdict row",
    )
    config.stash[OPTIONS] = options = _options(config)
    from polyaudit.store.limit import cap_from_config

    try:
        config.stash[CACHE_CAP] = cap_from_config(config.option.polyaudit_cache_max_gb,
                                                  config.option.polyaudit_cache_dir)
    except PolyauditError as e:
        raise pytest.UsageError(str(e)) from None
    from polyaudit.plugin.gate import Gate
    from polyaudit.progress import set_capture_suspender

    capman = config.pluginmanager.getplugin("capturemanager")
    progress = options.progress and capman is not None
    set_capture_suspender(capman.global_and_fixture_disabled if progress else None)
    gate = Gate.from_config(config, options.seed)
    config.stash[GATE] = gate
    config.pluginmanager.register(gate, "polyaudit-gate")
    from polyaudit.plugin.recorder import Recorder

    recorder = Recorder()
    config.stash[RECORDER] = recorder
    config.pluginmanager.register(recorder, "polyaudit-recorder")


def pytest_unconfigure(config: pytest.Config) -> None:
    from polyaudit.progress import set_capture_suspender

    set_capture_suspender(None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "subject" in metafunc.fixturenames:
        from polyaudit.models.base import model_id

        specs = metafunc.config.stash[OPTIONS].models
        metafunc.parametrize("subject", list(specs), indirect=True, scope="session",
                             ids=[model_id(s) for s in specs])
    if "dropout_family" in metafunc.fixturenames:  # C5: one test id per dropout family x layer
        from polyaudit.run.family import family_params

        runtime = runtime_of(metafunc.config)
        try:
            params, ids = runtime.memo(("family-params",), lambda: family_params(runtime))
        except PolyauditError as e:  # reported as one line by pytest_collection_modifyitems
            metafunc.config.stash[FAMILY_ERROR] = str(e)
            params, ids = [], []
        from polyaudit.plugin.marker import claim_of_function

        marker = claim_of_function(metafunc)
        if marker is not None and marker.check.first_site_only:  # one row per family, at its first layer
            firsts = {key: i for i, (key, _site) in reversed(list(enumerate(params)))}
            ids = [ids[i] for i in sorted(firsts.values())]
            params = [params[i] for i in sorted(firsts.values())]
        metafunc.parametrize(("dropout_family", "site"), params, indirect=["dropout_family"], scope="session",
                             ids=ids)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Load every model the selected claims need, declare their sites and build their probes now:
    a bad spec, an unreachable hub, an unknown architecture or a probe that is too small is one
    clear line (pytest's usage error), not a traceback per test."""
    if config.stash.get(FAMILY_ERROR, None):
        raise pytest.UsageError(config.stash[FAMILY_ERROR])
    needs: list[tuple[str, Any]] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "subject" not in callspec.params:
            continue
        # claim specs import scipy: only once a model is collected
        from polyaudit.plugin.marker import claim_of

        claim = claim_of(item)
        needs.append((callspec.params["subject"], None if claim is None else claim.check))
    if not needs or config.option.collectonly:
        return
    from polyaudit.models.base import model_id

    ids: dict[str, str] = {}
    for spec in dict.fromkeys(s for s, _ in needs):  # rows, reports and baselines are keyed by model id
        other = ids.setdefault(model_id(spec), spec)
        if other != spec:
            raise pytest.UsageError(f"--model {other} and --model {spec} both have the id {model_id(spec)!r} (the "
                                    "last part of the path): their rows could not be told apart; audit them in "
                                    "separate runs, or give the folders different names")
    runtime = runtime_of(config)
    try:
        for spec, check in needs:
            subject = runtime.subject(spec)
            if check is not None:
                subject.request(check.sites, check.probe, check.min_samples)
        for spec in dict.fromkeys(s for s, _ in needs):
            runtime.subject(spec).prepare()
        from polyaudit.models.memory import check_subject_capture

        kinds: dict[tuple[str, Any], set[str]] = {}
        for spec, check in needs:
            if check is not None:
                kinds.setdefault((spec, check.probe), set()).update(check.sites)
        for (spec, probe), site_kinds in kinds.items():
            check_subject_capture(runtime.subject(spec), probe, sorted(site_kinds))
    except PolyauditError as e:
        raise pytest.UsageError(str(e)) from None


@pytest.fixture(scope="session")
def subject(request: pytest.FixtureRequest) -> Any:
    """The model under audit (eval mode, grads off), with its probes and cached captures."""
    return runtime_of(request.config).subject(request.param)


@pytest.fixture(scope="session")
def dropout_family(request: pytest.FixtureRequest) -> Any:
    """A dropout family under audit (C5), its models trained or loaded once per run; or, for a model
    without one, a stand-in whose rows conclude SKIPPED with the reason."""
    from polyaudit.run.family import family_subject

    return family_subject(runtime_of(request.config), request.param)


@pytest.fixture
def audit(request: pytest.FixtureRequest) -> Any:
    """Per-test handle: profile, seeded rngs, the run memo, and `conclude(evidence)`."""
    from polyaudit.plugin.auditor import Auditor

    return Auditor(request.node, runtime_of(request.config))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Claim outcomes become their verdicts; anything else a claim test raises (in setup or in its
    body) still leaves a row: ERROR, with the error in one line (and, for an unexpected exception,
    "a polyaudit bug to report" and its traceback in the row's details; printed with -v or
    --full-trace)."""
    report = yield
    if call.when not in ("setup", "call") or call.excinfo is None:
        return report
    exc = call.excinfo.value
    if isinstance(exc, ClaimOutcome):
        report.longrepr = f"{exc.status}: {exc}"
        if isinstance(exc, ClaimInconclusive) and not item.config.stash[OPTIONS].strict:
            report.outcome = "passed"
            report.longrepr = None
    elif (item.get_closest_marker("claim") is not None and not isinstance(exc, _PYTEST_OUTCOMES)
          and row_of(report) is None):
        _error_row(item, report, call)
    return report


_PYTEST_OUTCOMES = (pytest.skip.Exception, pytest.xfail.Exception, pytest.exit.Exception, KeyboardInterrupt)


def _error_row(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    from polyaudit.plugin.auditor import error_row

    assert call.excinfo is not None
    exc = call.excinfo.value
    if isinstance(exc, PolyauditError):
        message, trace = str(exc), None
    else:
        first = (str(exc).strip().splitlines() or [""])[0]
        message = (f"internal error {type(exc).__name__}: {first} (a polyaudit bug: please report it, with "
                   "the traceback in this row's details)")
        trace = str(call.excinfo.getrepr(style="long", chain=True))
    try:
        row = error_row(item, runtime_of(item.config), message, trace)
    except Exception as e:  # the row itself failed (e.g. the model never loaded): say so, keep the error
        row = None
        message = f"{message} (and its row could not be built: {type(e).__name__}: {e})"
    if row is not None:
        report.user_properties.append((ROW_KEY, json.dumps(row, sort_keys=True)))
    config = item.config
    verbose = (config.get_verbosity() if hasattr(config, "get_verbosity") else config.option.verbose) >= 1
    if isinstance(exc, PolyauditError) or not (verbose or config.option.fulltrace):
        report.longrepr = f"ERROR: {message}"


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    if report.when != "call":
        return None
    row = row_of(report)
    if row is None:
        return None
    verdict = row.get("verdict")
    if verdict == "INCONCLUSIVE":
        if report.failed:
            return "failed", "I", ("INCONCLUSIVE (strict)", {"red": True})
        return "inconclusive", "I", ("INCONCLUSIVE", {"yellow": True})
    if verdict == "ERROR" and report.failed:
        return "error", "E", ("ERROR", {"red": True})
    if verdict == "FAIL" and report.failed:
        return "failed", "F", ("FAIL", {"red": True})
    if verdict == "PASS" and report.passed:
        return "passed", ".", ("PASS", {"green": True})
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return  # pytest-xdist worker: the controller writes the reports
    recorder = config.stash[RECORDER]
    if recorder.rows:
        from polyaudit.plugin.writer import write_reports

        write_reports(config, recorder)
    cap = config.stash.get(CACHE_CAP, None)
    if cap is not None:
        recorder.notes.extend(cap.enforce())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    recorder = config.stash.get(RECORDER, None)
    if recorder is None or not recorder.rows:
        return
    from polyaudit.plugin.writer import terminal_text

    terminalreporter.write_sep("=", "polyaudit", bold=True)
    terminalreporter.write(terminal_text(config, recorder))
    runtime = config.stash.get(RUNTIME, None)
    summary = runtime.cache_summary() if runtime is not None else None
    if summary:
        terminalreporter.write_line(f"polyaudit cache: {summary}")
    for note in recorder.notes:
        terminalreporter.write_line(f"polyaudit cache: {note}")
    for path in recorder.written:
        terminalreporter.write_line(f"polyaudit report written: {path}")
    for problem in recorder.problems:
        terminalreporter.write_line(f"polyaudit: {problem}", yellow=True)
