"""CNNs end to end through `--model`: the zoo CNN and a random-init ResNet-style CNN from a factory
run every claim (C1-C6), with per-position codes, exact crossings where the net is ReLU + affine,
and approximate crossings (said so in the row) where max pooling rules exactness out."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch._dynamo  # noqa: F401  (optimizers and hooks import it lazily; pytester must not drop it)

ROOT = Path(__file__).resolve().parents[2]
MEASURED = {"PASS", "FAIL", "INCONCLUSIVE"}

RESNET = textwrap.dedent(
    '''
    import torch
    from torch import nn

    class Block(nn.Module):  # torchvision's BasicBlock: one in-place relu called twice, a residual add
        def __init__(self, c, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU(inplace=True)
            self.down = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += self.down(x)
            return self.relu(out)

    class ResNet(nn.Module):
        def __init__(self, pool):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu = nn.ReLU(inplace=True)
            self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
            self.layer1 = Block(16)
            self.layer2 = Block(16, stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            x = self.pool(self.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(self.avgpool(self.layer2(self.layer1(x))), 1))

    def _images(seed=0, n=200):
        """Four classes of 6x6 RGB images: a bright square in one of the four quadrants, plus noise."""
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 4
        x = 0.3 * torch.randn(n, 3, 6, 6, generator=g)
        for i in range(n):
            r, c = divmod(int(y[i]), 2)
            x[i, :, 3 * r:3 * r + 3, 3 * c:3 * c + 3] += 1.0
        return x, y

    def _build(pool):
        torch.manual_seed(0)  # a factory is the user's code: random init, no weights downloaded
        net = ResNet(pool)
        with torch.no_grad():  # eval-mode batch norm with non-trivial running statistics
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.normal_(0.0, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
        return net, _images()

    def resnet():
        return _build(pool=False)

    def resnet_maxpool():
        return _build(pool=True)
    '''
)


@pytest.fixture(autouse=True)
def _torch_one_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def claims_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """Every claim file, plus the ResNet factory module, in a pytester folder."""
    for path in sorted((ROOT / "claims").glob("test_*.py")):
        shutil.copy(path, pytester.path / path.name)
    pytester.makepyfile(cnn_factory=RESNET)
    pytester.syspathinsert()
    return pytester


def _audit(p: pytest.Pytester, *args: str) -> dict:
    out = p.path / f"audit-{len(list(p.path.glob('audit-*.json')))}.json"
    result = p.runpytest(*args, "--profile=quick", f"--json={out}", "--no-reports", "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    return json.loads(out.read_text())


def _by_claim(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["claim"], []).append(row)
    return out


def test_zoo_cnn_runs_every_claim(claims_project: pytest.Pytester) -> None:
    # the smallest family C5 accepts (4 models over 4 rates), so the test trains in seconds
    doc = _audit(claims_project, "--model=zoo:cnn-digits", "--family=zoo:cnn-digits?rates=0,0.2,0.4,0.6&seeds=1")
    claims = _by_claim(doc["rows"])
    assert set(claims) == {"C1", "C2", "C3", "C4", "C5", "C6"}
    assert doc["probe"]["name"] == "digits@pos=center" and doc["probe"]["n_samples"] == 1024
    for row in doc["rows"]:
        # the neuron baseline may be degenerate (one channel most active for over half the images): ERROR
        if not (row["claim"] == "C1" and row["site"].endswith("/neuron")):
            assert row["verdict"] in MEASURED, (row["test_id"], row["verdict"], row["notes"])
    c1 = claims["C1"]
    assert {r["details"]["d"] for r in c1 if "d" in r["details"]} == {24}  # one [channels] vector per image
    assert all("spline codes exact (relu)" in r["notes"] for r in c1 if r["verdict"] in MEASURED)
    c2 = {r["site"]: r for r in claims["C2"]}
    assert {"input/linear", "blocks.1.resid/linear", "blocks.1.resid/diff-vs-same"} <= set(c2)
    assert all(r["details"]["exact"] for s, r in c2.items() if s.endswith(("linear", "slerp")))
    assert all("crossings exact" in r["notes"] for r in claims["C2"] + claims["C3"])
    assert {r["site"] for r in claims["C3"]} == {"blocks.0.resid/scale", "blocks.0.resid/direction"}
    assert len(claims["C4"]) == 2 and len(claims["C6"]) == 2
    assert {r["site"] for r in claims["C5"]} >= {f"blocks.{i}.resid" for i in range(4)}


def test_random_init_resnet_from_a_factory_runs_every_claim(claims_project: pytest.Pytester) -> None:
    doc = _audit(claims_project, "--model=cnn_factory:resnet?pos=all", "--model=cnn_factory:resnet_maxpool")
    by_model: dict[str, list[dict]] = {}
    for row in doc["rows"]:
        by_model.setdefault(row["model"], []).append(row)
    assert set(by_model) == {"cnn_factory:resnet-posall", "cnn_factory:resnet_maxpool"}
    for model, rows in by_model.items():
        claims = _by_claim(rows)
        assert set(claims) == {"C1", "C2", "C3", "C4", "C5", "C6"}, model
        family = [r for r in claims["C5"] if "-dropout-" in r["test_id"]]
        assert family and all(r["verdict"] == "SKIPPED" for r in family), model  # a factory has no family
        if not model.endswith("posall"):
            continue  # 200 centre samples of 16 channels after max pooling: spectra can ERROR (too few)
        for row in rows:
            if row not in family and not (row["claim"] == "C1" and row["site"].endswith("/neuron")):
                assert row["verdict"] in MEASURED, (model, row["test_id"], row["verdict"], row["notes"])
    for model, rows in by_model.items():
        c2 = {r["site"]: r for r in rows if r["claim"] == "C2"}
        # 5 ReLU calls (stem + 2 per block): the hidden rows interpolate the middle one's output
        assert {"input/linear", "blocks.2.resid/linear"} <= set(c2), model
        exact = model.endswith("posall")
        assert all(r["details"]["exact"] is exact for s, r in c2.items() if s.endswith("linear")), model
    maxpool = [r for r in by_model["cnn_factory:resnet_maxpool"] if r["claim"] in ("C2", "C3")]
    assert all("not exact" in r["notes"] and "MaxPool2d" in r["notes"] for r in maxpool)
    c1 = [r for r in by_model["cnn_factory:resnet-posall"] if r["claim"] == "C1"]
    measured = [r for r in c1 if r["verdict"] in MEASURED]
    assert measured
    # n counts the units of replication (the 200 images); samples are every position of the coarsest (3x3) map
    assert all(r["n"] == 200 and r["details"]["n_samples"] == 200 * 9 for r in measured)
