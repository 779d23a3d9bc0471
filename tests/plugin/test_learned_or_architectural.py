"""Acceptance of --control (the untrained twin): every claim on a zoo model trained to show its
effects, and on the same architecture untrained, loaded as the model through a factory.

- trained: the effects training made are reported `learned` (the zoo MLP's depth trend of alpha, C4
  at the residual site, is absent at init: the untrained stack of random ReLU layers has none).
- untrained: nothing the model shows can have been learned, so every row that PASSes is
  `architectural` (its twin, another draw of the same initialisation, shows it too) and no row is
  `learned`.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

UNTRAINED = textwrap.dedent(
    '''
    import torch

    from polyaudit.models.zoo import resolve


    def make(seed=7):
        """zoo:mlp-digits' architecture, untrained (its recipe's initialisation), on the digits."""
        from sklearn.datasets import load_digits

        entry, params = resolve("mlp-digits", {})
        net = entry.build(params, torch.Generator().manual_seed(seed))
        data = load_digits()
        x = torch.tensor(data.data / 16.0, dtype=torch.float32)
        return net, (x, torch.tensor(data.target))
    '''
)


@pytest.fixture
def claims_project(pytester: pytest.Pytester) -> pytest.Pytester:
    for f in (ROOT / "claims").glob("test_*.py"):
        shutil.copy(f, pytester.path / f.name)
    pytester.makepyfile(untrained_mlp=UNTRAINED)
    pytester.syspathinsert()
    return pytester


def _audit(p: pytest.Pytester, model: str) -> list[dict]:
    out = p.path / f"{model.replace(':', '_')}.json"
    result = p.runpytest_subprocess(f"--model={model}", "--profile=quick", "--control=init", f"--json={out}", "--no-reports",
                         "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()[-3000:]
    return [r for r in json.loads(out.read_text())["rows"] if r["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")]


def _summary(rows: list[dict]) -> list[tuple]:
    return [(r["test_id"], r["verdict"], r["origin"], r["control"] and r["control"]["verdict"]) for r in rows]


@pytest.mark.slow
def test_trained_effects_are_learned_and_untrained_ones_architectural(claims_project: pytest.Pytester) -> None:
    trained = _audit(claims_project, "zoo:mlp-digits")
    assert all(r["control"] is not None and r["origin"] in ("learned", "architectural", "absent")
               for r in trained if not r["test_id"].startswith("C5-dropout")), _summary(trained)
    c4 = {r["site"]: r for r in trained if r["claim"] == "C4"}
    assert c4["resid"]["verdict"] == "PASS" and c4["resid"]["origin"] == "learned", _summary(trained)
    assert c4["resid"]["control"]["verdict"] != "PASS"

    untrained = _audit(claims_project, "untrained_mlp:make")
    assert untrained, "nothing was measured on the untrained model"
    assert not [r for r in untrained if r["origin"] == "learned"], _summary(untrained)
    passed = [r for r in untrained if r["verdict"] == "PASS"]
    assert all(r["origin"] == "architectural" for r in passed), _summary(untrained)
