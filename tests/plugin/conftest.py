"""Helpers for driving the plugin end to end with pytester."""

from __future__ import annotations

import textwrap

# pytester's in-process runs drop modules first imported inside a run; re-importing a C extension
# such as torch in the next run crashes the interpreter. Import the heavy stack once, up front.
import numpy  # noqa: F401
import pytest
import scipy.stats  # noqa: F401
import sklearn.linear_model  # noqa: F401
import torch  # noqa: F401
import transformers  # noqa: F401

FACTORY = textwrap.dedent(
    '''
    import torch

    def make(width=32, depth=3, n=400, seed=0):
        g = torch.Generator().manual_seed(seed)
        layers = []
        d_in = 8
        for _ in range(depth):
            lin = torch.nn.Linear(d_in, width)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) / d_in ** 0.5)
                lin.bias.zero_()
            layers += [lin, torch.nn.ReLU()]
            d_in = width
        layers.append(torch.nn.Linear(d_in, 3))
        net = torch.nn.Sequential(*layers)
        x = torch.randn(n, 8, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        return net, (x, y)

    def make_other():
        return make(width=24, seed=1)

    def make_bare():
        return make()[0]
    '''
)

FAKE_CLAIM = textwrap.dedent(
    '''
    import math
    import pytest
    from polyaudit.claimspec import Check, ClaimSpec, Statistic
    from polyaudit.verdict import Evidence

    SPEC = ClaimSpec("C9", 2, "a fake claim", "tests", (Statistic("fake", "fake-stat"),),
                     (Check("fake", "fake", sites=("resid",)),))
    CASES = {
        "pass": dict(effect=0.5, ci=(0.2, 0.8), p=0.001),
        "fail": dict(effect=-0.5, ci=(-0.8, -0.2), p=0.001),
        "inconclusive": dict(effect=0.1, ci=(-0.2, 0.4), p=0.5),
        "error": dict(effect=math.nan, ci=(math.nan, math.nan), p=math.nan),
    }

    @pytest.mark.claim(SPEC, check="fake")
    @pytest.mark.parametrize("site", [*CASES, "skip"])
    def test_fake(subject, site, audit):
        if site == "skip":
            ev = SPEC.skipped(site, "does not apply here")
        else:
            ev = Evidence("C9", 2, site, "fake-stat", n=10, **CASES[site])
        audit.conclude(ev, subject)
    '''
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder with a factory module (three-layer ReLU MLP + probe) on sys.path."""
    pytester.makepyfile(factory_mod=FACTORY)
    pytester.syspathinsert()
    return pytester


@pytest.fixture
def fake_claim() -> str:
    """Source of a claim file whose rows have known verdicts: pass, fail, inconclusive, error, skip."""
    return FAKE_CLAIM
