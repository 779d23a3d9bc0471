"""Dropout families (C5): parsing `--family`, the conv autoencoder recipe, deterministic training,
and test-time unit dropout (rate 0 changes nothing; rate 1 leaves chance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polyaudit.errors import PolyauditError
from polyaudit.interventions.unit_dropout import score, task_for, unit_dropout, unit_site_kind
from polyaudit.models import zoo
from polyaudit.models.family import DEFAULT_RATES, implicit_family, parse_family
from polyaudit.models.loader import load_model
from polyaudit.models.sequential import SequentialAdapter
from polyaudit.probes.digits import digits_probe
from polyaudit.profiles import PROFILES
from polyaudit.run.family import FamilySubject, load_family
from polyaudit.run.runtime import RunOptions, Runtime

SMALL_MLP = {"width": "16", "depth": "2"}
SMALL_AE = {"width": "2", "latent": "4"}


def test_default_zoo_family_grid() -> None:
    fam = parse_family("zoo:mlp-digits")
    assert fam.zoo_name == "mlp-digits" and fam.text == "zoo:mlp-digits"
    assert len(fam.members) == 15 and sorted(set(fam.rates)) == list(DEFAULT_RATES)
    assert {m.seed for m in fam.members} == {0, 1, 2}
    assert fam.members[-1].spec == "zoo:mlp-digits?dropout=0.8&seed=2"
    conv = parse_family("zoo:conv-ae-digits?rates=0,0.4,0.8&seeds=2&width=4")
    assert [m.spec for m in conv.members[:2]] == [
        "zoo:conv-ae-digits?width=4&dropout=0&seed=0", "zoo:conv-ae-digits?width=4&dropout=0&seed=1"]
    assert parse_family(conv.text) == conv  # the canonical text parses back to the same family


def test_user_checkpoint_family(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    fam = parse_family(f"0.0={tmp_path / 'a'},0.4={tmp_path / 'b'},0.4={tmp_path / 'c'},0.8=zoo:mlp-digits")
    assert fam.rates == (0.0, 0.4, 0.4, 0.8) and fam.zoo_name is None
    assert fam.members[1].spec == str(tmp_path / "b")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("zoo:mlp-digits?dropout=0.2", "a family varies dropout"),
        ("zoo:mlp-digits?seed=1", "a family varies seed"),
        ("zoo:mlp-digits?rates=0,0.5", "2 distinct dropout rate"),
        ("zoo:mlp-digits?rates=0,0.5,1.0", r"must be in \[0, 1\)"),
        ("zoo:mlp-digits?seeds=none", "must be a count"),
        ("zoo:mlp-digits?width=0", "must be in 1..4096"),
        ("zoo:nope", "the zoo has mlp-digits, conv-ae-digits"),
        ("0.0=./no/such/ckpt,0.4=./b,0.8=./c", "does not exist"),
        ("./ckpt_a,./ckpt_b", "RATE=SPEC"),
        ("x=zoo:mlp-digits,0.4=zoo:mlp-digits,0.8=zoo:mlp-digits", "not a number"),
    ],
)
def test_bad_family_specs(text: str, match: str) -> None:
    with pytest.raises(PolyauditError, match=match) as info:
        parse_family(text)
    assert "\n" not in str(info.value)


def test_implicit_family_of_a_zoo_model() -> None:
    fam = implicit_family("zoo:mlp-digits?dropout=0.4&seed=1&width=32")
    assert fam is not None and fam.text == "zoo:mlp-digits?width=32" and len(fam.members) == 15
    assert implicit_family("zoo:conv-ae-digits") is not None
    assert implicit_family("gpt2") is None and implicit_family("pkg.mod:make") is None


def _spec(name: str, params: dict[str, str], seed: int) -> str:
    return f"zoo:{name}?" + "&".join(f"{k}={v}" for k, v in params.items()) + f"&dropout=0.4&seed={seed}"


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("family-zoo")


def test_conv_autoencoder_sites_and_shapes(zoo_cache: Path) -> None:
    lm = load_model(_spec("conv-ae-digits", SMALL_AE, 2), cache_dir=str(zoo_cache / "a"))
    net, adapter = lm.model, lm.adapter
    assert isinstance(adapter, SequentialAdapter)
    assert (adapter.n_layers, adapter.activation, adapter.piecewise_linear) == (5, "relu", True)
    assert sum(isinstance(m, torch.nn.Dropout) for m in net) == 3  # after every encoder ReLU
    assert net(torch.zeros(3, 64)).shape == (3, 64) and not net.training
    assert lm.meta is not None and 0 < lm.meta["metrics"]["test_mse"] < lm.meta["metrics"]["mean_image_mse"]
    assert task_for(lm, digits_probe(PROFILES["quick"], 0)).kind == "reconstruct"


@pytest.mark.parametrize(("name", "params"), [("mlp-digits", SMALL_MLP), ("conv-ae-digits", SMALL_AE)])
def test_training_is_deterministic_from_the_seed(name: str, params: dict[str, str], zoo_cache: Path) -> None:
    """Same seed in two fresh caches: identical weights hash; another seed: different weights; no
    global RNG touched."""
    rng_before = torch.random.get_rng_state()
    first = load_model(_spec(name, params, 2), cache_dir=str(zoo_cache / "a"))
    second = load_model(_spec(name, params, 2), cache_dir=str(zoo_cache / "b"))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert second.meta is not None and not second.meta["cache_hit"]
    assert first.sha256 == second.sha256
    if name == "mlp-digits":  # (one recipe is enough to see the seed matter; training costs)
        other = load_model(_spec(name, params, 3), cache_dir=str(zoo_cache / "a"))
        assert other.sha256 != first.sha256


@pytest.fixture(scope="module")
def small_mlp(tmp_path_factory: pytest.TempPathFactory) -> object:
    return load_model("zoo:mlp-digits?width=16&depth=2", cache_dir=str(tmp_path_factory.mktemp("zoo")))


def test_unit_dropout_at_rate_zero_changes_nothing(small_mlp: object) -> None:
    lm = small_mlp
    probe = digits_probe(PROFILES["quick"], 0)
    x = probe.inputs[:64]
    for site in lm.adapter.sites(unit_site_kind(lm.adapter)):
        out = lm.adapter.run_with_replacement(x, None, site, unit_dropout(0.0, torch.Generator()))
        assert torch.equal(out, lm.adapter.logits(x))


def test_unit_dropout_at_rate_one_leaves_chance(small_mlp: object) -> None:
    """Every unit of a layer zeroed: the output no longer depends on the input, so the model
    predicts one class for every image and its accuracy is that class's frequency (chance)."""
    lm = small_mlp
    probe = digits_probe(PROFILES["default"], 0)
    task = task_for(lm, probe)
    assert task.kind == "classify" and task.chance == pytest.approx(0.1)
    clean = score(lm, probe, task).mean_metric
    assert clean > 0.8
    freq = np.bincount(probe.labels) / probe.labels.size
    for site in lm.adapter.sites("resid"):
        out = lm.adapter.run_with_replacement(probe.inputs, None, site, unit_dropout(1.0, torch.Generator()))
        pred = out.argmax(-1).numpy()
        assert np.unique(pred).size == 1
        acc = score(lm, probe, task, site=site, q=1.0).mean_metric
        assert acc == pytest.approx(freq[pred[0]]) and acc <= freq.max() < 0.11


def test_unit_dropout_keeps_the_mean_and_is_seeded() -> None:
    t = torch.ones(200, 500)
    a = unit_dropout(0.3, torch.Generator().manual_seed(1))(None, t)  # type: ignore[arg-type]
    b = unit_dropout(0.3, torch.Generator().manual_seed(1))(None, t)  # type: ignore[arg-type]
    assert torch.equal(a, b)
    assert float((a == 0).float().mean()) == pytest.approx(0.3, abs=0.01)
    assert float(a.mean()) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(PolyauditError, match="in \\[0, 1\\]"):
        unit_dropout(1.5, torch.Generator())


def test_load_family_and_mismatched_members(tmp_path: Path) -> None:
    options = RunOptions(cache_dir=str(tmp_path), profile=PROFILES["quick"])
    runtime = Runtime(options)
    fam = parse_family("zoo:mlp-digits?width=8&depth=2&rates=0,0.4,0.8&seeds=1")
    loaded = load_family(fam, runtime)
    assert isinstance(loaded, FamilySubject) and loaded.rates == [0.0, 0.4, 0.8]
    info = loaded.model_info()
    assert [m["rate"] for m in info["members"]] == [0.0, 0.4, 0.8]
    assert len(loaded.loaded.sha256) == 64 and loaded.id == "family-zoo:mlp-digits-width8-depth2-rates0,0.4,0.8-seeds1"
    mixed = parse_family("0=zoo:mlp-digits?width=8&depth=2,0.4=zoo:mlp-digits?width=8&depth=3,"
                         "0.8=zoo:mlp-digits?width=8&depth=2")
    with pytest.raises(PolyauditError, match="must share their architecture"):
        load_family(mixed, runtime)


def test_family_parametrization_without_training() -> None:
    """Test ids come from the architecture alone: the implicit family of a zoo --model (its rows
    carry the model's id), a SKIPPED entry for a model without one, and --family on its own."""
    from polyaudit.run.family import family_params

    before = dict(zoo.TRAIN_CALLS)
    runtime = Runtime(RunOptions(models=("zoo:mlp-digits?width=8&depth=2", "pkg.mod:make")))
    params, ids = family_params(runtime)
    assert params == [("of:zoo:mlp-digits?width=8&depth=2", "blocks.0.resid"),
                      ("of:zoo:mlp-digits?width=8&depth=2", "blocks.1.resid"), ("none:pkg.mod:make", "-")]
    assert ids == ["zoo:mlp-digits-width8-depth2:blocks.0.resid", "zoo:mlp-digits-width8-depth2:blocks.1.resid",
                   "pkg.mod:make:no-family"]
    explicit = Runtime(RunOptions(models=("gpt2",), families=("zoo:conv-ae-digits?seeds=1",)))
    params, ids = family_params(explicit)
    assert [site for _, site in params] == [f"blocks.{i}.resid" for i in range(5)]
    assert ids[0] == "family-zoo:conv-ae-digits-seeds1:blocks.0.resid"
    assert before == zoo.TRAIN_CALLS  # nothing was trained to name the tests
