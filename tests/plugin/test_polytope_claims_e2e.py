"""C1-C3 (Polytope Lens) end to end through `--model`: every architecture family's tiny checkpoint
and the zoo default in one audit, row by row; and the same numbers again from the same seed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.tiny_models import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
CLAIM_FILES = ("test_c1_monosemantic_polytopes.py", "test_c2_boundaries_semantics.py",
               "test_c3_direction_validity.py")
VERDICTS = {"PASS", "FAIL", "INCONCLUSIVE"}  # every family has labels, heads and 3 layers: no skip, no error
ROWS_PER_MODEL = {"C1": 9, "C2": 6, "C3": 2}  # C2: 3 rows at the input/residual stream, 3 hidden (CNNs only)


@pytest.fixture(autouse=True)
def _torch_one_thread() -> Iterator[None]:
    """Torch on one thread meanwhile: these tiny models gain nothing from a second thread, and on a
    shared 2-core machine spinning threads cost 10x."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def lens_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """The three claim files in a pytester folder."""
    for name in CLAIM_FILES:
        shutil.copy(ROOT / "claims" / name, pytester.path / name)
    return pytester


def _audit(p: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    out = p.path / f"audit-{len(list(p.path.glob('audit-*.json')))}.json"
    result = p.runpytest(*args, "--profile=quick", f"--json={out}", "--no-reports", "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    return result, json.loads(out.read_text())


def test_c1_c3_on_every_family_and_the_zoo(lens_project: pytest.Pytester, tiny_models: dict[str, Path]) -> None:
    models = [f"--model={tiny_models[f]}" for f in FAMILIES] + ["--model=zoo:mlp-digits"]
    result, doc = _audit(lens_project, *models)
    by_model: dict[str, list[dict]] = {}
    for row in doc["rows"]:
        by_model.setdefault(row["model"], []).append(row)
    assert set(by_model) == {*FAMILIES, "zoo:mlp-digits"}
    for model, rows in by_model.items():
        counts = {c: sum(r["claim"] == c for r in rows) for c in ROWS_PER_MODEL}
        assert counts == ROWS_PER_MODEL, model
        for row in rows:
            if row["site"].startswith("hidden/"):  # C2 in a hidden layer: convolutional networks only
                assert row["verdict"] == "SKIPPED" and "convolutional" in row["notes"], row
                continue
            assert row["verdict"] in VERDICTS, (model, row["test_id"], row["verdict"], row["notes"])
            lo, hi = row["ci"]
            assert lo <= row["effect"] <= hi or row["claim"] == "C1"  # C1: bias-corrected interval
            assert 0 <= row["p"] <= row["p_adj"] <= 1
        c1 = [r for r in rows if r["claim"] == "C1"]
        assert all(m["sizes"]["largest_fraction"] <= 0.5 for r in c1 for m in r["details"]["methods"].values())
        exact = model == "zoo:mlp-digits"
        c2 = {r["site"].split("/")[-1]: r for r in rows if r["claim"] == "C2" and r["verdict"] != "SKIPPED"}
        assert set(c2) == {"linear", "slerp", "diff-vs-same"}
        assert c2["linear"]["details"]["exact"] is exact
        c3 = {r["site"].split("/")[-1]: r for r in rows if r["claim"] == "C3"}
        assert "validity_radius" in c3["direction"]["details"]
    zoo = by_model["zoo:mlp-digits"]
    assert any(r["test_id"] == "C1-monosemantic[zoo:mlp-digits:blocks.0.mlp.pre/direction]" for r in zoo)
    assert all("spline codes exact (relu)" in r["notes"] for r in zoo if r["claim"] == "C1")
    assert all("crossings exact" in r["notes"] for r in zoo if r["claim"] != "C1" and r["verdict"] != "SKIPPED")
    lens = [r for rows in by_model.values() for r in rows if r["claim"] in ("C2", "C3") and r["verdict"] in VERDICTS]
    assert all("frozen-code control" in r["notes"] for r in lens)  # every C2/C3 row says how its control was made
    assert all(r["details"]["n_control"] > 0 for r in lens if not r["site"].endswith("diff-vs-same"))
    gelu = [r for r in by_model["gpt2"] if r["claim"] == "C1"]
    assert all("approximate" in r["notes"] for r in gelu)
    assert all("crossings approximate" in r["notes"] for r in by_model["opt"] if r["claim"] != "C1" and r["verdict"] != "SKIPPED")
    assert "effect [CI]" in result.stdout.str()  # the terminal table (simultaneous CIs)


def test_same_seed_same_numbers(lens_project: pytest.Pytester, tmp_path: Path) -> None:
    args = ("--model=zoo:mlp-digits", "--seed=5", f"--cache-dir={tmp_path / 'cache'}")
    first, doc1 = _audit(lens_project, *args)
    _second, doc2 = _audit(lens_project, *args, "--no-cache")

    def numbers(doc: dict) -> list:
        return sorted((r["test_id"], r["effect"], r["ci"], r["p"], r["p_adj"]) for r in doc["rows"])

    assert numbers(doc1) == numbers(doc2)
    assert "12 claim measurement(s) computed" in first.stdout.str()  # the model and its 3 twins


@pytest.mark.parametrize("family", sorted({"gpt2", "gpt_neox", "llama", "opt"} & set(FAMILIES)))
def test_prefix_cache_gives_the_full_forward_numbers(tiny_models: dict[str, Path], family: str) -> None:
    """C2/C3's one-token-per-point evaluation (prefix keys/values computed once per context) gives
    the codes and output distributions of running the whole context for every point."""
    import numpy as np
    import torch

    from polyaudit.interventions.downstream import AdapterDownstream, Contexts, later_sites
    from polyaudit.interventions.evaluators import make_downstream
    from polyaudit.interventions.prefix_cache import PrefixCachedDownstream
    from polyaudit.models.loader import load_model
    from polyaudit.probes.registry import build_probe
    from polyaudit.profiles import PROFILES

    lm = load_model(str(tiny_models[family]))
    probe = build_probe("labelled:categories", lm, PROFILES["quick"], 0)
    seq, pos = probe.positions[:12, 0], probe.positions[:12, 1]
    contexts = Contexts(probe.inputs[seq], probe.attention_mask[seq], pos)
    site = lm.adapter.site("resid", 0)
    got: dict[str, torch.Tensor] = {}
    lm.adapter.run_until(probe.inputs[seq], probe.attention_mask[seq],
                         {site: lambda s, t: got.__setitem__("h", t[torch.arange(12), torch.from_numpy(pos)])})
    h = got["h"].double().numpy()
    points = np.concatenate([h, 1.5 * h, h[::-1]])  # the last block: activations written into other contexts
    ctx = np.tile(np.arange(12), 3)
    fast = make_downstream(lm, site, contexts)
    assert isinstance(fast, PrefixCachedDownstream)
    full = AdapterDownstream(lm.adapter, site, later_sites(lm.adapter, site), contexts)
    (codes_a, logp_a), (codes_b, logp_b) = full.outputs(points, ctx), fast.outputs(points, ctx)
    assert (codes_a == codes_b).mean() > 0.999
    np.testing.assert_allclose(logp_a, logp_b, atol=1e-4)
    # the linearized control through either route: with the forward difference reaching the point
    # itself, the extrapolation is the point's own output
    ends, reach = 1.5 * h, 16 * np.linalg.norm(0.5 * h, axis=1)
    for down in (full, fast):
        at = down.outputs(h, np.arange(12))[1]
        np.testing.assert_allclose(down.frozen(h, ends, np.arange(12), at, reach), down.outputs(ends, np.arange(12))[1],
                                   atol=1e-4)
