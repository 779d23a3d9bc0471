"""--control: every row is measured on a control twin too (same probe, same resamples), and the
report says whether the effect is learned, architectural or absent. A stand-in claim measures a
weight-dependent quantity (the mean |activation| at the first hidden layer, with bootstrap
replicates) through `audit.measure`, so the framework runs it on the model and on its twin."""

from __future__ import annotations

import json

import jsonschema
import pytest

from polyaudit.report.load import report_schema

CLAIM = '''
import numpy as np
import pytest

from polyaudit.claimspec import Check, ClaimSpec, Statistic
from polyaudit.stats import bootstrap_p_value, percentile_ci, percentile_interval

SPEC = ClaimSpec("C8", 1, "activations are large", "tests",
                 (Statistic("size", "mean |activation| - 0.1", "positive", min_effect=0.05),),
                 (Check("size", "size", sites=("resid",)),))


def measure(subject, audit):
    data = subject.capture().get(subject.adapter.site("resid", 0))
    per_sample = np.abs(data.samples).mean(axis=1) - 0.1
    idx = audit.rng("C8", "boot").integers(0, per_sample.size, size=(2000, per_sample.size))
    reps = per_sample[idx].mean(axis=1)
    return {"resid": SPEC.evidence("resid", effect=float(per_sample.mean()), ci=percentile_ci(reps),
                                   p=bootstrap_p_value(reps), n=per_sample.size,
                                   interval=percentile_interval(reps), replicates=reps)}


@pytest.mark.claim(SPEC, check="size")
def test_size(subject, audit):
    audit.conclude(audit.measure(subject, lambda: measure(subject, audit))["resid"], subject)
'''


def _run(project: pytest.Pytester, *args: str) -> dict:
    project.makepyfile(test_size_claim=CLAIM)
    out = project.path / "out.json"
    model = [] if any(a.startswith("--model=") for a in args) else ["--model=factory_mod:make"]
    project.runpytest(*model, f"--json={out}", "--no-reports", "-p", "no:cacheprovider", *args)
    return json.loads(out.read_text())


@pytest.mark.parametrize("kind", ["init", "shuffle"])
def test_every_row_has_its_control_and_origin(project: pytest.Pytester, kind: str) -> None:
    doc = _run(project, f"--control={kind}")
    jsonschema.validate(doc, report_schema())
    (row,) = doc["rows"]
    assert doc["control"] == kind
    control, vs = row["control"], row["vs_control"]
    assert control["kind"] == kind and control["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
    assert control["sha256"] and control["how"]
    # three twins by default: the difference is judged against the spread of untrained draws
    assert control["n_twins"] == vs["n_twins"] == 3 == len(control["effects"]) == len(control["verdicts"])
    assert len(set(control["effects"])) == 3  # independent draws
    assert control["effect"] == pytest.approx(sum(control["effects"]) / 3)
    assert vs["paired"] is False and "prediction interval" in vs["method"]
    assert vs["effect"] == pytest.approx(row["effect"] - control["effect"])
    assert vs["ci"][0] <= vs["effect"] <= vs["ci"][1]
    assert row["origin"] in ("learned", "architectural", "absent")
    assert row["origin"] in row["reason"]


def test_one_twin_pairs_its_replicates(project: pytest.Pytester) -> None:
    (row,) = _run(project, "--control-twins=1")["rows"]
    vs = row["vs_control"]
    assert row["control"]["n_twins"] == 1 and vs["paired"] is True
    assert "spread between untrained draws is not measured" in vs["method"]
    assert vs["effect"] == pytest.approx(row["effect"] - row["control"]["effect"])


def test_a_bad_number_of_twins_is_one_line(project: pytest.Pytester) -> None:
    project.makepyfile(test_size_claim=CLAIM)
    result = project.runpytest("--model=factory_mod:make", "--control-twins=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--control-twins must be a whole number >= 1*"])


def test_no_control(project: pytest.Pytester) -> None:
    (row,) = _run(project, "--control=none")["rows"]
    assert row["control"] is None and row["vs_control"] is None and row["origin"] is None


def test_the_same_twin_gives_the_same_numbers(project: pytest.Pytester) -> None:
    # the same weights in both runs (factory_mod's head is drawn from the global generator): the
    # twin is seeded from --seed and the weights, so the same model has the same twin
    project.makepyfile(det_mod="import torch\nimport factory_mod\n\n\ndef make():\n    torch.manual_seed(0)\n"
                               "    return factory_mod.make()\n")
    a, b = (_run(project, "--control=init", "--no-cache", "--model=det_mod:make")["rows"][0] for _ in range(2))
    keep = ("effect", "ci", "p_adj", "verdict")
    assert {k: a["control"][k] for k in keep} == {k: b["control"][k] for k in keep}
    assert a["vs_control"] == b["vs_control"]


def test_an_unknown_control_is_one_line(project: pytest.Pytester) -> None:
    project.makepyfile(test_size_claim=CLAIM)
    result = project.runpytest("--model=factory_mod:make", "--control=random")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown control 'random'*init, shuffle, none*"])


def test_a_cached_run_gives_the_computed_numbers(project: pytest.Pytester) -> None:
    """The replicates that pair a row with its twin are kept in the results cache, at the precision
    they are stored in, so a warm run reports the cold run's paired difference, not an unpaired one."""
    project.makepyfile(det_mod="import torch\nimport factory_mod\n\n\ndef make():\n    torch.manual_seed(0)\n"
                               "    return factory_mod.make()\n")
    project.makepyfile(test_size_claim=CLAIM)
    docs, outs = [], []
    for i in range(2):
        out = project.path / f"out{i}.json"
        outs.append(project.runpytest("--model=det_mod:make", f"--json={out}", "--no-reports", "-p", "no:cacheprovider",
                                      f"--cache-dir={project.path / 'cache'}", "--control-twins=1"))
        docs.append(json.loads(out.read_text())["rows"][0])
    cold, warm = docs
    assert "2 claim measurement(s) computed" in outs[0].stdout.str()
    assert "2 served from the results cache" in outs[1].stdout.str()
    assert cold["vs_control"]["paired"] is True
    assert warm["vs_control"] == cold["vs_control"] and warm["control"] == cold["control"]
