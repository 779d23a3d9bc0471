"""The convolutional adapter: per-position codes equal a manual slice of the hooked feature map, for
every position selector, through the same capture the claims read; ResNet-style blocks with a
shared in-place ReLU; the position selector in specs; the zoo CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from polyaudit.capture import Capture
from polyaudit.errors import PolyauditError
from polyaudit.models.base import Capabilities, LoadedModel
from polyaudit.models.check import check_adapter
from polyaudit.models.conv import ConvAdapter, parse_pos
from polyaudit.models.factory import make_adapter
from polyaudit.probes.base import ProbeSet
from polyaudit.probes.spatial import at_positions


class Block(nn.Module):
    """torchvision's BasicBlock pattern: one in-place ReLU module called twice, a residual add."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True))
        self.layer1 = Block(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer1(self.stem(x))).flatten(1))


def _models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 7, 3, stride=2, padding=1),
                        nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(7 * 9, 6), nn.ReLU(), nn.Linear(6, 3))
    res = TinyResNet()
    with torch.no_grad():
        for m in res.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    return {"sequential": (seq.eval(), torch.randn(40, 2, 6, 6, generator=g)),
            "resnet": (res.eval(), torch.randn(40, 3, 10, 10, generator=g))}


def _feature_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every ReLU call's INPUT, copied before an in-place ReLU overwrites it (manual hooks)."""
    maps: list[torch.Tensor] = []
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    handles = [m.register_forward_pre_hook(lambda _m, a: maps.append(a[0].detach().clone())) for m in relus]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return maps


@pytest.mark.parametrize("name", ["sequential", "resnet"])
@pytest.mark.parametrize("pos", ["center", "all", "1,2"])
def test_position_selected_codes_equal_a_manual_slice(name: str, pos: str) -> None:
    model, x = _models()[name]
    adapter = ConvAdapter(model, x, pos=pos)
    maps = _feature_maps(model, x)
    assert adapter.n_layers == len(maps)  # the shared relu is two layers in the ResNet
    probe = at_positions(ProbeSet(name="imgs", kind="vectors", inputs=x, labels=np.arange(40) % 4),
                         pos, adapter.positions_per_input)
    loaded = LoadedModel(spec="test", model=model, adapter=adapter, sha256="")
    cap = Capture(loaded, probe, cache=None, batch_size=16)
    cap.request(["mlp_pre"])
    spatial = [m for m in maps if m.dim() == 4]
    coarse = min(spatial, key=lambda m: m.shape[2] * m.shape[3])
    fine = max(spatial, key=lambda m: m.shape[2] * m.shape[3])
    for layer, fmap in enumerate(maps):
        data = cap.get(adapter.site("mlp_pre", layer))
        if fmap.dim() == 2:  # a dense layer: one vector per image, shared by its positions
            want = fmap.repeat_interleave(adapter.positions_per_input, dim=0)
        elif pos == "center":
            want = fmap[:, :, fmap.shape[2] // 2, fmap.shape[3] // 2]
        elif pos == "all":  # every cell of the coarsest map, at the same relative place of this one
            hc, wc = coarse.shape[2], coarse.shape[3]
            rows = [int((i + 0.5) * fmap.shape[2] / hc) for i in range(hc)]
            cols = [int((j + 0.5) * fmap.shape[3] / wc) for j in range(wc)]
            want = fmap[:, :, rows][:, :, :, cols].permute(0, 2, 3, 1).reshape(-1, fmap.shape[1])
        else:
            i = int((1 + 0.5) * fmap.shape[2] / fine.shape[2])
            j = int((2 + 0.5) * fmap.shape[3] / fine.shape[3])
            want = fmap[:, :, i, j]
        np.testing.assert_array_equal(data.codes, want.numpy() > 0, err_msg=f"{name} layer {layer} pos={pos}")
        np.testing.assert_allclose(data.samples, want.numpy(), rtol=2e-3, atol=1e-3)  # float16 storage
    n_rows = {"center": 1, "1,2": 1, "all": coarse.shape[2] * coarse.shape[3]}[pos]
    assert probe.n_samples == 40 * n_rows
    np.testing.assert_array_equal(probe.groups, np.repeat(np.arange(40), n_rows))  # resample whole images


@pytest.mark.parametrize("name", ["sequential", "resnet"])
@pytest.mark.parametrize("pos", ["center", "all", "1,2"])
def test_conforms(name: str, pos: str) -> None:
    """The public conformance suite: sites, hooks on whole maps (each call of a shared module its
    own site), position selection, feature maps, replacement, declared capabilities."""
    model, x = _models()[name]
    adapter = ConvAdapter(model, x, pos=pos)
    assert adapter.capabilities == Capabilities(feature_maps=True, spatial_positions=True, exact_walk=True)
    assert adapter.position_selector == pos
    assert check_adapter(adapter, x[:4]) == []


def test_hooks_see_whole_feature_maps_and_bind_each_call() -> None:
    model, x = _models()["resnet"]
    adapter = ConvAdapter(model, x)
    assert adapter.paths == ["stem.2", "layer1.relu", "layer1.relu#1"]
    assert [(s.path, s.call) for s in adapter.sites("resid")] == [("stem.2", 0), ("layer1.relu", 0),
                                                                  ("layer1.relu", 1)]
    # a write at the second call of the shared relu changes only what comes after it
    site = adapter.site("resid", 2)
    out = adapter.run_with_replacement(x, None, site, lambda s, t: torch.zeros_like(t))
    torch.testing.assert_close(out, model.fc.bias.expand(40, 4))


def test_position_selectors_and_where_they_apply() -> None:
    assert parse_pos("center") == "center" and parse_pos("ALL") == "all" and parse_pos("(2, 3)") == (2, 3)
    with pytest.raises(PolyauditError, match="pos=center"):
        parse_pos("middle")
    model, x = _models()["sequential"]
    with pytest.raises(PolyauditError, match="outside the finest feature map"):
        ConvAdapter(model, x, pos="6,0")
    with pytest.raises(PolyauditError, match="needs example images"):
        make_adapter(model)
    with pytest.raises(PolyauditError, match="without convolutions"):
        make_adapter(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), pos="all")
    assert isinstance(make_adapter(model, x), ConvAdapter)


def test_specs_carry_the_selector() -> None:
    from polyaudit.models.base import model_id
    from polyaudit.models.spec import parse_spec

    spec = parse_spec("mypkg.nets:resnet?pos=all")
    assert (spec.kind, spec.target, spec.params) == ("factory", "mypkg.nets:resnet", {"pos": "all"})
    assert model_id("mypkg.nets:resnet?pos=all") == "mypkg.nets:resnet-posall"
    with pytest.raises(PolyauditError, match="a factory takes pos="):
        parse_spec("mypkg.nets:resnet?width=3")


def test_zoo_cnn_reads_positions_without_retraining(tmp_path) -> None:
    from polyaudit.models import zoo
    from polyaudit.models.loader import load_model

    center = load_model("zoo:cnn-digits?width=4", cache_dir=str(tmp_path))
    assert center.meta is not None and center.meta["metrics"]["test_accuracy"] > 0.5
    trained = zoo.TRAIN_CALLS.get("cnn-digits", 0)
    every = load_model("zoo:cnn-digits?width=4&pos=all", cache_dir=str(tmp_path))
    assert zoo.TRAIN_CALLS["cnn-digits"] == trained and every.sha256 == center.sha256  # same weights
    assert isinstance(every.adapter, ConvAdapter) and every.adapter.positions_per_input == 16
    assert (center.adapter.n_layers, center.adapter.activation, center.adapter.piecewise_linear) == (4, "relu", True)
    assert check_adapter(every.adapter, torch.rand(3, 64)) == []
    with pytest.raises(PolyauditError, match=r"pos=.* must be center, all or I,J"):
        load_model("zoo:cnn-digits?pos=left", cache_dir=str(tmp_path))


def test_a_torchvision_resnet_when_installed() -> None:
    tv = pytest.importorskip("torchvision")
    from polyaudit.interventions.module_walk import ModuleWalker

    net = tv.models.resnet18(weights=None, num_classes=10).eval()  # random init: nothing downloaded
    adapter = make_adapter(net, torch.randn(2, 3, 32, 32))
    assert isinstance(adapter, ConvAdapter)
    assert adapter.n_layers == 17 and adapter.piecewise_linear  # stem + 2 calls of each block's relu
    assert adapter.paths[:3] == ["relu", "layer1.0.relu", "layer1.0.relu#1"]
    assert check_adapter(adapter, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))) == []
    with pytest.raises(PolyauditError, match="MaxPool2d"):  # the stem's max pooling: approximate
        ModuleWalker(net)
