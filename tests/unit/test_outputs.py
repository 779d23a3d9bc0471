"""The output spaces semantic change is measured in (`polyaudit.analyses.outputs`), and a headless
model's outputs as the evaluators and the single-checkpoint C5 read them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyaudit.analyses.alignment import linearized
from polyaudit.analyses.outputs import (
    DISTRIBUTION,
    cosine_change,
    embedding,
    js_bits,
    log_softmax,
    unit_rows,
)


def test_cosine_change_is_zero_for_the_same_direction_and_one_for_the_opposite() -> None:
    a = np.array([[1.0, 2.0, 3.0]])
    assert cosine_change(a, 5 * a)[0] == pytest.approx(0.0, abs=1e-12)
    assert cosine_change(a, -a)[0] == pytest.approx(1.0)
    assert cosine_change(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]))[0] == pytest.approx(0.5)


def test_the_embedding_space_has_no_top_output_and_keeps_unit_rows() -> None:
    space = embedding()
    z = np.random.default_rng(0).standard_normal((4, 6))
    assert space.top(z) is None
    np.testing.assert_allclose(np.linalg.norm(space.renormalise(z), axis=1), 1.0)
    np.testing.assert_allclose(space.change(z, 3 * z), 0.0, atol=1e-12)
    assert "cosine" in space.what and "no output head" in space.what
    assert DISTRIBUTION.top(log_softmax(z)) is not None


def test_distribution_space_is_the_js_divergence() -> None:
    z = np.random.default_rng(1).standard_normal((5, 7))
    a, b = log_softmax(z[:, :7]), log_softmax(z[::-1])
    np.testing.assert_array_equal(DISTRIBUTION.change(a, b), js_bits(a, b))


def test_linearized_embeddings_are_exact_for_a_linear_map() -> None:
    """The frozen-code control of an embedding: the forward difference of a linear map extrapolates
    exactly to the point's own (unit) output."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 5))
    anchors, points = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    frac = np.full(4, 0.1)
    probes = anchors + frac[:, None] * (points - anchors)
    got = linearized(unit_rows(anchors @ w), unit_rows(probes @ w), frac, embedding())
    # unit rows are not linear in the point, so the extrapolation is only first-order: it is exact in
    # direction when the anchor and point outputs are parallel, and close otherwise
    assert got.shape == (4, 5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0)
    same = linearized(unit_rows(anchors @ w), unit_rows((anchors * 2) @ w), frac, embedding())
    np.testing.assert_allclose(same, unit_rows(anchors @ w), atol=1e-12)


@pytest.fixture(scope="module")
def headless_bert(tiny_headless_models):  # type: ignore[no-untyped-def]
    from polyaudit.models.loader import load_model

    return load_model(str(tiny_headless_models["bert"]))


def test_a_headless_encoder_is_read_as_its_final_hidden_state(headless_bert) -> None:  # type: ignore[no-untyped-def]
    """Writing the site's own activation back gives the model's own final hidden state at the kept
    position, as a unit vector; the pooled sentence embedding where a pooling is named."""
    from polyaudit.interventions.downstream import (
        AdapterDownstream,
        Contexts,
        later_sites,
        output_space,
    )
    from polyaudit.models.pooling import Pooling

    ad = headless_bert.adapter
    assert not ad.capabilities.output_head and output_space(ad).kind == "embedding"
    ids = headless_bert.tokenizer(["red green blue and more", "one two three four five"], return_tensors="pt",
                                  padding=True)["input_ids"]
    pos = np.array([2, 3])
    site = ad.site("resid", 0)
    got: dict[str, torch.Tensor] = {}
    with torch.inference_mode(), ad.hooks(reads={site: lambda s, t: got.__setitem__("h", t.clone())}):
        hidden = ad.logits(ids)
    own = got["h"][torch.arange(2), torch.from_numpy(pos)].double().numpy()
    ctx = Contexts(inputs=ids, pos=pos)
    down = AdapterDownstream(ad, site, later_sites(ad, site), ctx, causal=False)
    _, out = down.outputs(own, np.arange(2))
    want = hidden[torch.arange(2), torch.from_numpy(pos)].double().numpy()
    np.testing.assert_allclose(out, unit_rows(want), atol=2e-5)
    try:
        ad.pooling = Pooling(("mean",))
        pooled = AdapterDownstream(ad, site, later_sites(ad, site), ctx, causal=False)
        _, out = pooled.outputs(own, np.arange(2))
        np.testing.assert_allclose(out, unit_rows(hidden.double().mean(1).numpy()), atol=2e-5)
        assert "mean pooling" in pooled.space.what
    finally:
        ad.pooling = None


def test_unit_dropout_on_a_headless_model_scores_the_change_of_its_representation(headless_bert) -> None:  # type: ignore[no-untyped-def]
    from polyaudit.interventions.unit_dropout import score, task_for
    from polyaudit.probes.registry import build_probe
    from polyaudit.profiles import get_profile

    probe = build_probe("text:stdlib", headless_bert, get_profile("quick"), 0)
    task = task_for(headless_bert, probe, representation=True)
    assert task.kind == "represent"
    with pytest.raises(Exception, match="no output head"):
        task_for(headless_bert, probe)
    clean = score(headless_bert, probe, task)
    assert clean.outputs is not None and np.all(clean.loss == 0)
    site = headless_bert.adapter.site("mlp_out", 1)
    small = score(headless_bert, probe, task, site=site, q=0.1, generator=torch.Generator().manual_seed(0),
                  reference=clean)
    big = score(headless_bert, probe, task, site=site, q=0.9, generator=torch.Generator().manual_seed(0),
                reference=clean)
    assert np.all(small.loss > 0) and np.all(small.loss <= 1)
    assert big.loss.mean() > small.loss.mean()
