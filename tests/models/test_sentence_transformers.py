"""sentence-transformers folders load as their transformer with their pooling recorded: the modes of
the Pooling config (old `pooling_mode_*` booleans and ST >= 5's `pooling_mode`), where it was read and
the later modules (not applied); `Pooling.pool` agrees with hand computations for every mode (and with
sentence-transformers itself where it is installed); bad pipelines are one line; the pooling shows in
the report header."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

# pytester's in-process runs drop modules first imported inside a run, and re-importing torch there
# crashes the interpreter: the heavy stack is imported once, up front (as tests/plugin/conftest.py).
import numpy  # noqa: F401
import pytest
import scipy.stats  # noqa: F401
import sklearn.linear_model  # noqa: F401
import torch
import transformers  # noqa: F401

from polyaudit.errors import PolyauditError
from polyaudit.models.loader import load_model
from polyaudit.models.pooling import MODES, Pooling
from polyaudit.models.sentence import pooling_modes

# two sequences, d = 2: the second has two padding positions holding huge values
HIDDEN = torch.tensor([
    [[1.0, -2.0], [3.0, 0.0], [5.0, 4.0], [0.5, 0.5]],
    [[2.0, 1.0], [-4.0, 3.0], [99.0, 99.0], [99.0, -99.0]],
])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
EXPECTED = {  # by hand, over the real tokens only
    "cls": [[1.0, -2.0], [2.0, 1.0]],
    "max": [[5.0, 4.0], [2.0, 3.0]],
    "mean": [[9.5 / 4, 2.5 / 4], [-1.0, 2.0]],
    "mean_sqrt_len": [[9.5 / 2, 2.5 / 2], [-2.0 / 2**0.5, 4.0 / 2**0.5]],
    "weightedmean": [[(1 + 6 + 15 + 2) / 10, (-2 + 0 + 12 + 2) / 10], [(2 - 8) / 3, (1 + 6) / 3]],
    "lasttoken": [[0.5, 0.5], [-4.0, 3.0]],
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_by_hand(mode: str) -> None:
    got = Pooling((mode,)).pool(HIDDEN, MASK)
    torch.testing.assert_close(got, torch.tensor(EXPECTED[mode]))


def test_padding_never_counts() -> None:
    """Whatever the padded positions hold, no mode sees them."""
    other = HIDDEN.clone()
    other[1, 2:] = torch.tensor([[-1e4, 7.0], [3.0, 1e4]])
    pooling = Pooling(MODES)
    torch.testing.assert_close(pooling.pool(other, MASK), pooling.pool(HIDDEN, MASK))


def test_no_mask_pools_every_token() -> None:
    torch.testing.assert_close(Pooling(("mean",)).pool(HIDDEN), HIDDEN.mean(1))
    torch.testing.assert_close(Pooling(("lasttoken",)).pool(HIDDEN), HIDDEN[:, -1])


def test_two_modes_concatenate_in_sentence_transformers_order() -> None:
    """ST concatenates cls, max, mean, mean_sqrt_len, weightedmean, lasttoken, whatever order the
    modes are named in."""
    got = Pooling(("mean", "cls")).pool(HIDDEN, MASK)
    want = torch.cat([torch.tensor(EXPECTED["cls"]), torch.tensor(EXPECTED["mean"])], dim=-1)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("config", "modes"), [
    ({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}, ("mean",)),
    ({"pooling_mode_cls_token": True, "pooling_mode_max_tokens": True, "pooling_mode_lasttoken": False}, ("cls", "max")),
    ({"pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_weightedmean_tokens": True},
     ("mean_sqrt_len", "weightedmean")),
    ({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False}, ("mean",)),  # none on: ST's mean
    ({"embedding_dimension": 64, "pooling_mode": "lasttoken", "include_prompt": True}, ("lasttoken",)),  # ST >= 5
    ({"pooling_mode": ["cls", "mean_sqrt_len_tokens"]}, ("cls", "mean_sqrt_len")),
])
def test_pooling_config_modes(config: dict[str, Any], modes: tuple[str, ...]) -> None:
    assert pooling_modes(config, "1_Pooling/config.json") == modes


def test_the_fixture_loads_with_its_pooling(tiny_sentence_model: Path) -> None:
    lm = load_model(str(tiny_sentence_model))
    pooling = lm.adapter.pooling
    assert pooling == Pooling(("mean",), source="1_Pooling/config.json", after=("Normalize",))
    assert lm.adapter.family == "bert" and not lm.adapter.capabilities.output_head
    assert lm.max_positions == 64  # sentence_bert_config.json's max_seq_length caps the context (128)
    assert lm.meta is not None and lm.meta["pooling"] == pooling.describe() == lm.adapter.describe()["pooling"]
    assert pooling.describe() == "mean pooling (1_Pooling/config.json); not applied after it: Normalize"


@pytest.mark.parametrize(("subfolder", "modes", "normalize"), [
    (True, ("mean",), True),
    (False, ("cls", "max"), False),
    (True, ("lasttoken",), False),
])
def test_both_layouts(tmp_path: Path, subfolder: bool, modes: tuple[str, ...], normalize: bool) -> None:
    from fixtures.tiny_models import build_tiny_sentence

    folder = build_tiny_sentence(tmp_path / "st", modes=modes, subfolder=subfolder, normalize=normalize)
    assert (folder / "0_Transformer" / "config.json").is_file() == subfolder
    lm = load_model(str(folder))
    after = ("Normalize",) if normalize else ()
    assert lm.adapter.pooling == Pooling(modes, source="1_Pooling/config.json", after=after)
    assert lm.id == "st" and lm.meta is not None
    assert lm.meta["sentence_transformers"]["transformer"] == ("0_Transformer" if subfolder else ".")


def test_a_plain_folder_has_no_pooling(tiny_headless_models: dict[str, Path]) -> None:
    lm = load_model(str(tiny_headless_models["bert"]))
    assert lm.adapter.pooling is None and "pooling" not in lm.adapter.describe()
    assert lm.meta is not None and "pooling" not in lm.meta and "sentence_transformers" not in lm.meta
    assert lm.max_positions == 128


def test_a_cached_hub_snapshot(tmp_path: Path) -> None:
    """A hub id whose snapshot (old layout: the transformer in 0_Transformer/) is in the local cache
    loads from it, with its pooling and the snapshot's commit."""
    from fixtures.tiny_models import build_tiny_sentence

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--polyaudit--tiny-st"
    build_tiny_sentence(repo / "snapshots" / commit, modes=("cls",), subfolder=True, normalize=False)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    lm = load_model("polyaudit/tiny-st", hf_cache_dir=str(tmp_path))
    assert lm.adapter.pooling == Pooling(("cls",), source="1_Pooling/config.json")
    assert (lm.revision, lm.meta and lm.meta["kind"]) == (commit, "hub")
    shutil.rmtree(repo / "snapshots" / commit / "0_Transformer")
    _one_line_error(lambda: load_model("polyaudit/tiny-st", hf_cache_dir=str(tmp_path)),
                    "0_Transformer/", "not in the local", "cache")


def test_the_same_embeddings_as_sentence_transformers(tmp_path: Path) -> None:
    """The transformer polyaudit loads, pooled by the recorded pooling and normalized, is the
    embedding sentence-transformers computes from the same folder (both layouts, several modes)."""
    st = pytest.importorskip("sentence_transformers")
    from fixtures.tiny_models import build_tiny_sentence

    texts = ["Return the value of the named attribute of object.", "a", "The quick brown fox jumps."]
    for subfolder, modes in [(False, ("mean",)), (True, ("cls", "max", "mean")), (False, ("weightedmean",)),
                             (True, ("lasttoken",)), (False, ("mean_sqrt_len",))]:
        folder = build_tiny_sentence(tmp_path / f"st-{subfolder}-{'-'.join(modes)}", modes=modes, subfolder=subfolder)
        want = st.SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_tensor=True)
        lm = load_model(str(folder))
        assert lm.adapter.pooling is not None
        tok = lm.tokenizer(texts, padding=True, truncation=True, max_length=lm.max_positions, return_tensors="pt")
        with torch.inference_mode():
            hidden = lm.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        got = torch.nn.functional.normalize(lm.adapter.pooling.pool(hidden, tok["attention_mask"]), dim=-1)
        torch.testing.assert_close(got, want.to(got.dtype), atol=1e-5, rtol=1e-5, msg=f"{subfolder} {modes}")


# --- bad pipelines: one line each -------------------------------------------------------------------

def _one_line_error(load: Callable[[], object], *words: str) -> str:
    with pytest.raises(PolyauditError) as info:
        load()
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.fixture
def st_copy(tiny_sentence_model: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "st-copy"
    shutil.copytree(tiny_sentence_model, dst)
    return dst


TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
DENSE = {"idx": 1, "name": "1", "path": "1_Dense", "type": "sentence_transformers.models.Dense"}


@pytest.mark.parametrize(("modules", "words"), [
    ('[{"idx": 0, "path": ""', ("modules.json", "cannot read")),
    ('{"0": "Transformer"}', ("not a list of modules",)),
    ("[]", ("not a list of modules",)),
    ([{"idx": 0, "path": ""}], ("module 0", "lacks a type")),
    ([{**TRANSFORMER, "path": "../elsewhere"}, POOLING], ("outside the folder",)),
    ([POOLING], ("must name one Transformer module", "it has none", "modules: Pooling")),
    ([TRANSFORMER, TRANSFORMER, POOLING], ("must name one Transformer module", "it has 2")),
    ([TRANSFORMER, DENSE, POOLING], ("must follow the Transformer module directly", "Transformer, Dense, Pooling")),
    ([{**TRANSFORMER, "path": "0_Transformer"}, POOLING], ("'0_Transformer'", "no config.json")),
])
def test_a_bad_modules_json_is_one_line(st_copy: Path, modules: Any, words: tuple[str, ...]) -> None:
    (st_copy / "modules.json").write_text(modules if isinstance(modules, str) else json.dumps(modules))
    _one_line_error(lambda: load_model(str(st_copy)), *words)


@pytest.mark.parametrize(("config", "words"), [
    ('{"pooling_mode_mean_tokens": tr', ("cannot read the pooling config", "config.json")),
    ("[1, 2]", ("not a JSON object",)),
    ('{"word_embedding_dimension": 64}', ("names no pooling mode",)),
    ('{"pooling_mode_mean_tokens": "yes"}', ("pooling_mode_mean_tokens must be true or false",)),
    ('{"pooling_mode": "median"}', ("unknown pooling mode", "'median'")),
    ('{"pooling_mode": []}', ("pooling_mode must be a mode name",)),
    (None, ("has no 1_Pooling/config.json",)),
])
def test_a_bad_pooling_config_is_one_line(st_copy: Path, config: str | None, words: tuple[str, ...]) -> None:
    path = st_copy / "1_Pooling" / "config.json"
    if config is None:
        path.unlink()
    else:
        path.write_text(config)
    _one_line_error(lambda: load_model(str(st_copy)), *words)


def test_a_pipeline_without_pooling_loads_without_it(st_copy: Path) -> None:
    (st_copy / "modules.json").write_text(json.dumps([TRANSFORMER]))
    assert load_model(str(st_copy)).adapter.pooling is None


# --- the report header ------------------------------------------------------------------------------

CLAIM = '''
import pytest
from polyaudit.claimspec import Check, ClaimSpec, Statistic
from polyaudit.verdict import Evidence

SPEC = ClaimSpec("C9", 1, "a stand-in claim", "tests", (Statistic("fake", "fake-stat"),),
                 (Check("fake", "fake", sites=("resid",)),))


@pytest.mark.claim(SPEC, check="fake")
def test_fake(subject, audit):
    audit.conclude(Evidence("C9", 1, "resid", "fake-stat", n=10, effect=0.5, ci=(0.2, 0.8), p=0.001), subject)
'''


def test_the_report_header_shows_the_pooling(pytester: pytest.Pytester, tiny_sentence_model: Path) -> None:
    pytester.makepyfile(test_fake_claim=CLAIM)
    out = pytester.path / "out.json"
    result = pytester.runpytest(f"--model={tiny_sentence_model}", "--profile=quick", "--control=none",
                                f"--json={out}", "--no-reports", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    text = " ".join(line.strip() for line in result.stdout.lines)  # the header wraps at 80 columns
    assert "pooling: mean pooling (1_Pooling/config.json); not applied after it: Normalize" in text
    (model,) = json.loads(out.read_text())["models"]
    assert model["pooling"] == "mean pooling (1_Pooling/config.json); not applied after it: Normalize"


def test_left_padding_pools_like_right_padding() -> None:
    """cls and weightedmean count from the first real token, so a left-padded row pools as the same
    tokens padded on the right do."""
    from polyaudit.models.pooling import MODES, Pooling

    g = torch.Generator().manual_seed(3)
    tokens = torch.randn(1, 3, 4, generator=g)
    pad = torch.zeros(1, 2, 4)
    right, left = torch.cat([tokens, pad], 1), torch.cat([pad, tokens], 1)
    m_right, m_left = torch.tensor([[1, 1, 1, 0, 0]]), torch.tensor([[0, 0, 1, 1, 1]])
    for mode in MODES:
        pool = Pooling((mode,))
        torch.testing.assert_close(pool.pool(left, m_left), pool.pool(right, m_right), msg=mode)
