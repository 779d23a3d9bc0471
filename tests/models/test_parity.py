"""Activation parity (polyaudit.models.parity): on every family, what the adapter reads is what the
model computes; a planted adapter bug (a site hooked one layer off, the wrong MLP module) is one
line naming the family, the site and the size of the difference, and no claim runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fixtures.tiny_models import FAMILIES, build_tiny
from polyaudit.errors import PolyauditError
from polyaudit.models.base import Site, SiteKind
from polyaudit.models.hf import HFAdapter, make_hf_adapter
from polyaudit.models.loader import load_model
from polyaudit.models.parity import check_parity


def _batch(lm):  # type: ignore[no-untyped-def]
    enc = lm.tokenizer(["The for statement iterates over a sequence.", "A short one."], return_tensors="pt",
                       padding=True)
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_passes(tiny_models: dict[str, Path], tmp_path: Path, family: str, dtype: str) -> None:
    folder = tiny_models[family] if dtype == "float32" else build_tiny(family, tmp_path / family, dtype=dtype)
    lm = load_model(str(folder))
    found = check_parity(lm.adapter, *_batch(lm))
    assert found["checked"] and found["resid_layers"] == 3
    assert found["mlp_layers"] == (0 if family == "llama" else 3)


class OneLayerOff(HFAdapter):
    """A planted adapter bug: the residual stream of layer l read at block l + 1."""

    def _site(self, kind: SiteKind, layer: int) -> Site:
        if kind == "resid":
            return super()._site(kind, min(layer + 1, self.n_layers - 1))
        return super()._site(kind, layer)


class WrongMlp(HFAdapter):
    """A planted adapter bug: mlp_pre read at the block's MLP of the previous layer."""

    def _site(self, kind: SiteKind, layer: int) -> Site:
        return super()._site(kind, max(layer - 1, 0) if kind == "mlp_pre" else layer)


@pytest.mark.parametrize(("bug", "where"), [(OneLayerOff, "layer 0 resid"), (WrongMlp, "layer 1 mlp_pre")])
def test_a_planted_adapter_bug_is_one_line(tiny_models: dict[str, Path], bug: type, where: str) -> None:
    lm = load_model(str(tiny_models["gpt2"]))
    good = make_hf_adapter(lm.model)
    adapter = bug(lm.model, good.layout, good.blocks)
    with pytest.raises(PolyauditError) as err:
        check_parity(adapter, *_batch(lm))
    text = str(err.value)
    assert "\n" not in text.strip() and "gpt2 adapter" in text and where in text and "differs by" in text


FACTORY = '''
from pathlib import Path

from polyaudit.models.hf import HFAdapter, make_hf_adapter
from polyaudit.models.loader import load_model


class OneLayerOff(HFAdapter):
    def _site(self, kind, layer):
        return super()._site(kind, min(layer + 1, self.n_layers - 1) if kind == "resid" else layer)


def make():
    lm = load_model(str(Path(__file__).parent / "tiny"))
    good = make_hf_adapter(lm.model)
    return OneLayerOff(lm.model, good.layout, good.blocks)
'''


def test_no_claim_runs_on_wrong_activations(pytester: pytest.Pytester, tiny_models: dict[str, Path]) -> None:
    import shutil

    shutil.copytree(tiny_models["gpt2"], pytester.path / "tiny")
    pytester.makepyfile(buggy_factory=FACTORY)
    pytester.syspathinsert()
    claims = Path(__file__).resolve().parents[2] / "claims"
    result = pytester.runpytest_subprocess(str(claims / "test_c4_alpha_depth.py"), "--model=buggy_factory:make",
                                           "--profile=quick", "--no-reports", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "activation parity failed for the gpt2 adapter at layer 0 resid" in err and "Traceback" not in err
    sys.modules.pop("buggy_factory", None)
