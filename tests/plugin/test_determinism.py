"""Determinism (issue 7, part 7), end to end through the plugin (pytester).

- Same seed, same device: two runs without any cache write byte-identical JSON for every number
  of every claim's rows (effects, CIs, p-values, details with the bootstrap replicates).
- Different seeds: on the default zoo model at the quick profile the seed changes the probe's
  stratified subsample of the digits, the bootstrap and permutation draws and the k-means starts;
  for C4, C1 and the C5 dropout family, every row's effect under each of seeds 0, 1, 2 lies inside
  the CI of the same row under every other seed.
- Location: the same checkpoint saved in two folders gives the same numbers (draws and control
  twins follow the weights, not the path).
"""

from __future__ import annotations

import itertools
import json
import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = sorted((ROOT / "claims").glob("test_c*.py"))
WIDE = textwrap.dedent(
    """
    import torch

    def make():  # a random 4-layer ReLU MLP on 48-dim inputs with 3 labels
        g = torch.Generator().manual_seed(0)
        layers, d_in = [], 48
        for d_out in (48, 48, 48, 48):
            lin = torch.nn.Linear(d_in, d_out)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * (2 / d_in) ** 0.5)
                lin.bias.copy_(0.1 * torch.randn(d_out, generator=g))
            layers += [lin, torch.nn.ReLU()]
            d_in = d_out
        head = torch.nn.Linear(48, 3)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=g) / 48 ** 0.5)
            head.bias.zero_()
        x = torch.randn(600, 48, generator=g) * torch.arange(1, 49) ** -0.5
        net = torch.nn.Sequential(*layers, head)
        with torch.no_grad():
            y = net(x).argmax(1)
        return net, (x, y)
    """
)


def _audit(p: pytest.Pytester, files: list[str], *args: str) -> dict:
    out = p.path / f"audit-{len(list(p.path.glob('audit-*.json')))}.json"
    result = p.runpytest(*files, *args, "--profile=quick", "--no-cache", "--no-reports", f"--json={out}",
                         "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    return json.loads(out.read_text())


def _numbers(doc: dict) -> str:
    """Every row as the report writes it, without the wall-clock fields, canonically serialised."""
    rows = sorted(doc["rows"], key=lambda r: r["test_id"])
    return json.dumps(rows, sort_keys=True, allow_nan=False)


@pytest.fixture
def claims_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(wide_mod=WIDE)
    pytester.syspathinsert()
    for f in CLAIMS:
        shutil.copy(f, pytester.path / f.name)
    return pytester


@pytest.mark.slow
def test_same_seed_gives_byte_identical_numbers(claims_project: pytest.Pytester) -> None:
    files = [f.name for f in CLAIMS]
    first = _audit(claims_project, files, "--model=wide_mod:make", "--seed=5")
    second = _audit(claims_project, files, "--model=wide_mod:make", "--seed=5")
    claims = {r["claim"] for r in first["rows"] if r["verdict"] not in ("SKIPPED", "ERROR")}
    assert claims == {"C1", "C2", "C3", "C4", "C5", "C6"}, claims  # every claim measured something
    assert _numbers(first) == _numbers(second)
    other = _audit(claims_project, files, "--model=wide_mod:make", "--seed=6")
    assert _numbers(other) != _numbers(first)  # the seed does reach the numbers


@pytest.mark.slow
@pytest.mark.parametrize("claim", [
    pytest.param("test_c4_alpha_depth.py", id="C4"),
    # C1 was a strict xfail here until version 3 (version 1: 24 of 54 checks outside, version 2: 11 of
    # 54): its paired replicates at the unit of replication and the simultaneous intervals now hold
    # every other seed's effect; version 4 (restarts resampled: 2 of 108 outside in one CI run) gave
    # way to version 5 (the restart mean's uncertainty with t(R - 1) tails)
    pytest.param("test_c1_monosemantic_polytopes.py", id="C1"),
    # the dropout family: its masks are drawn per seed, and its verdicts move with them near 0 or
    # the SESOI (6 of 34 rows across seeds 0-2), so what must hold is that the intervals carry it
    pytest.param("test_c5_dropout_family.py", id="C5-family"),
])
def test_different_seeds_agree_within_their_cis(claims_project: pytest.Pytester, claim: str) -> None:
    # the model's own effects across seeds: the control twins are not what this checks
    docs = [_audit(claims_project, [claim], f"--seed={seed}", "--control=none") for seed in (0, 1, 2)]
    by_seed = [{r["test_id"]: r for r in d["rows"] if r["verdict"] not in ("SKIPPED", "ERROR")} for d in docs]
    ids = set(by_seed[0])
    assert ids and all(set(b) == ids for b in by_seed)
    assert len({d["probe"]["sha256"] for d in docs}) == 3  # the seed changes the probe's subsample
    outside = []
    for a, b in itertools.permutations(by_seed, 2):
        for test_id in sorted(ids):
            lo, hi = a[test_id]["ci"]
            if not lo <= b[test_id]["effect"] <= hi:
                outside.append((test_id, b[test_id]["effect"], (lo, hi)))
    assert not outside, outside


def test_a_checkpoint_gives_the_same_numbers_wherever_it_is_saved(claims_project: pytest.Pytester) -> None:
    """The same weights in two folders, audited side by side in one run: every row of the claims
    that draw random numbers per model (bootstrap, dropout masks, stimuli, the control twin) has the
    same numbers; only the model's name differs."""
    from fixtures.tiny_models import build_tiny

    build_tiny("gpt2", claims_project.path / "a")
    build_tiny("gpt2", claims_project.path / "elsewhere" / "b")
    files = ["test_c4_alpha_depth.py", "test_c5_unit_dropout.py", "test_c6_action_alpha.py"]
    doc = _audit(claims_project, files, "--model=./a", "--model=./elsewhere/b", "--control-twins=1")
    keep = ("claim", "site", "statistic", "effect", "ci", "p", "p_adj", "verdict", "details", "control",
            "vs_control")
    by_model: dict[str, dict[str, str]] = {}
    for r in doc["rows"]:
        key = r["test_id"].replace(f"[{r['model']}:", "[<model>:")
        by_model.setdefault(r["model"], {})[key] = json.dumps({k: r.get(k) for k in keep}, sort_keys=True)
    assert len(by_model) == 2, sorted(by_model)
    a, b = by_model.values()
    assert set(a) == set(b) and len(a) >= 5
    assert {json.loads(v)["claim"] for v in a.values()} == {"C4", "C5", "C6"}
    moved = sorted(k for k in a if a[k] != b[k])
    assert not moved, moved
