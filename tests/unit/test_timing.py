"""The forward clock (polyaudit/timing.py) times every pass of a watched model, and a deep copy of
a watched model runs its own weights (not the original's) on the same clock."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from torch import nn

from polyaudit.timing import ForwardClock


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_counts_every_pass_once_and_keeps_outputs() -> None:
    clock = ForwardClock()
    net = _net()
    x = torch.randn(3, 4)
    before = net(x)
    clock.watch(net)
    clock.watch(net)  # idempotent: still one timer
    assert torch.equal(net(x), before)
    net(x)
    assert clock.calls == 2 and clock.seconds > 0
    assert list(inspect.signature(net.forward).parameters) == ["input"]


def test_a_pass_that_raises_still_counts() -> None:
    class Stop(Exception):
        pass

    clock = ForwardClock()
    net = _net()

    def stop(*_args: object) -> None:
        raise Stop

    net[0].register_forward_hook(stop)
    clock.watch(net)
    with pytest.raises(Stop):
        net(torch.randn(1, 4))
    assert clock.calls == 1


def test_deep_copy_runs_its_own_weights_on_the_same_clock() -> None:
    clock = ForwardClock()
    net = clock.watch(_net())
    twin = copy.deepcopy(net).double()
    with torch.no_grad():
        twin[2].bias.add_(10.0)
    x = torch.randn(2, 4)
    out, out_twin = net(x), twin(x.double())
    assert out_twin.dtype == torch.float64
    assert torch.allclose(out_twin, out.double() + 10.0, atol=1e-5)
    assert clock.calls == 2
