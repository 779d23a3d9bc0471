"""Control twins (polyaudit.models.control): the same architecture without what training put into
the weights, swapped into the model in place and back, deterministic, and never touching the global
random state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from polyaudit.errors import PolyauditError
from polyaudit.models.control import Twin
from polyaudit.models.hashing import model_sha256
from polyaudit.models.loader import load_model

ZOO = "zoo:mlp-digits?width=16&depth=2"


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["init", "shuffle"])
def test_the_twin_swaps_in_and_back_out(kind: str) -> None:
    lm = load_model(ZOO)
    trained, sha = _weights(lm.model), model_sha256(lm.model)
    rng_before = torch.random.get_rng_state()
    twin = Twin(lm, kind, seed=0)
    with twin.active():
        inside = _weights(lm.model)
        assert model_sha256(lm.model) != sha and twin.sha256 and twin.sha256 != sha
    assert torch.equal(torch.random.get_rng_state(), rng_before), "the global RNG was touched"
    assert model_sha256(lm.model) == sha and all(torch.equal(v, trained[k]) for k, v in _weights(lm.model).items())
    for name, w in inside.items():
        if kind == "shuffle":  # the same values, in another order
            assert torch.equal(w.flatten().sort().values, trained[name].flatten().sort().values)
        assert not torch.equal(w, trained[name]), name
    with twin.active():  # the second time: the same twin
        assert all(torch.equal(v, inside[k]) for k, v in _weights(lm.model).items())


def test_twins_are_deterministic_and_depend_on_the_seed() -> None:
    lm = load_model(ZOO)
    shas = []
    for seed in (0, 0, 1):
        twin = Twin(lm, "init", seed=seed)
        with twin.active():
            shas.append(model_sha256(lm.model))
    assert shas[0] == shas[1] != shas[2]


def test_the_untrained_zoo_twin_is_the_recipe_untrained() -> None:
    lm = load_model(ZOO)
    twin = Twin(lm, "init", seed=0)
    with twin.active():
        acc = (lm.model(torch.rand(64, 64)).argmax(1) == 3).float().mean()  # runs
    assert "untrained" in twin.describe()["how"] and 0 <= float(acc) <= 1


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_hf_twin_from_config_keeps_dtype_and_tied_weights(tmp_path: Path, dtype: str) -> None:
    from fixtures.tiny_models import build_tiny

    folder = build_tiny("gpt2", tmp_path / "gpt2", dtype=dtype)
    lm = load_model(str(folder))
    sha = model_sha256(lm.model)
    twin = Twin(lm, "init", seed=3)
    with twin.active():
        assert lm.adapter.dtype == getattr(torch, dtype)
        emb, head = lm.model.get_input_embeddings().weight, lm.model.get_output_embeddings().weight
        assert emb.data_ptr() == head.data_ptr()  # still tied
        assert model_sha256(lm.model) != sha
        assert "from_config" in twin.describe()["how"]
    assert model_sha256(lm.model) == sha


@pytest.mark.parametrize("kind", ["init", "shuffle"])
def test_the_twin_follows_the_weights_not_their_folder(tmp_path: Path, kind: str) -> None:
    """The same checkpoint saved in two folders has the same twin; another checkpoint another."""
    from fixtures.tiny_models import build_tiny

    shas = []
    for name, seed in (("a", 0), ("elsewhere/b", 0), ("c", 1)):
        lm = load_model(str(build_tiny("llama", tmp_path / name, seed=seed)))
        twin = Twin(lm, kind, seed=0)
        with twin.active():
            shas.append(model_sha256(lm.model))
    assert shas[0] == shas[1] != shas[2]


FACTORY = '''
import torch

def _net(seed):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net

def with_control():
    return {"model": _net(0), "control": _net(1), "probe": (torch.randn(30, 4), torch.arange(30) % 2)}

def wrong_control():
    return {"model": _net(0), "control": torch.nn.Linear(3, 3)}

def custom_parameter():
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.s = torch.nn.Parameter(torch.arange(8.0))
        def forward(self, x):
            return x * self.s
    return torch.nn.Sequential(torch.nn.Linear(4, 8), Scale(), torch.nn.ReLU(), torch.nn.Linear(8, 2))
'''


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"polyaudit_control_factory_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_factory_may_return_its_own_control(factory: str) -> None:
    lm = load_model(f"{factory}:with_control")
    control = lm.meta["control"]
    twin = Twin(lm, "init", seed=0)
    with twin.active():
        assert all(torch.equal(a, b) for a, b in zip(lm.model.state_dict().values(), control.state_dict().values(),
                                                     strict=True))
    assert twin.describe()["how"] == "the factory's own control"
    with pytest.raises(PolyauditError, match="control whose weights differ"):
        load_model(f"{factory}:wrong_control")


def test_parameters_without_reset_are_permuted_and_named(factory: str) -> None:
    lm = load_model(f"{factory}:custom_parameter")
    before = lm.model[1].s.detach().clone()
    twin = Twin(lm, "init", seed=0)
    with twin.active():
        after = lm.model[1].s.detach().clone()
    assert not torch.equal(after, before) and torch.equal(after.sort().values, before)
    assert "1.s" in twin.describe()["how"] and "permuted" in twin.describe()["how"]
