"""Sources of the fake projects the report tests run with pytester: a tiny factory model, a claim
whose effects come from `effects.json` (so a second run can drop one), and C1-C6 stand-ins whose rows
carry every kind of plot data. Kept out of conftest.py so test modules can import it by name."""

from __future__ import annotations

import textwrap
from typing import Any

FACTORY = textwrap.dedent(
    '''
    import torch

    def make(seed=0):
        g = torch.Generator().manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                                  torch.nn.ReLU(), torch.nn.Linear(16, 10))
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) / 8)
        return net

    def make_old():
        return make(0)

    def make_new():
        return make(1)
    '''
)

# A claim whose rows read their effect from effects.json: {"version": 1, "sites": {site: {"effect":
# .., "sd": .., "p": ..}}}. The bootstrap replicates are effect + sd * z with z drawn from the run's
# seed, so two runs with the same seed are paired replicate by replicate, as real claims are.
GATE_CLAIM = textwrap.dedent(
    '''
    import json
    import pathlib

    import numpy as np
    import pytest

    from polyaudit.claimspec import Check, ClaimSpec, Statistic
    from polyaudit.serial import encode_array
    from polyaudit.verdict import Evidence

    EFFECTS = json.loads(pathlib.Path("effects.json").read_text())
    VERSION = EFFECTS.get("version", 1)
    SPEC = ClaimSpec("C7", VERSION, "a gate stand-in", "tests", (Statistic("rho", "fake-rho"),),
                     (Check("gate", "rho", sites=("mlp_pre",)),))

    @pytest.mark.claim(SPEC, check="gate")
    @pytest.mark.parametrize("site", sorted(EFFECTS["sites"]))
    def test_gate(subject, site, audit):
        s = EFFECTS["sites"][site]
        z = audit.rng("C7", site).standard_normal(200)
        boot = s["effect"] + s.get("sd", 0.05) * z
        lo, hi = np.percentile(boot, [2.5, 97.5])
        ev = Evidence("C7", VERSION, site, "fake-rho", effect=s["effect"], ci=(float(lo), float(hi)),
                      p=s.get("p", 0.001), n=100, predicted=s.get("predicted", "positive"),
                      details={"boot_effect": encode_array(boot), "n_boot": 200})
        audit.conclude(ev, subject)
    '''
)


def effects(**sites: float | dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"version": 1, "sites": {}}
    for name, spec in sites.items():
        out["sites"][name] = spec if isinstance(spec, dict) else {"effect": spec}
    return out


# Claims C1-C6 stand-ins whose rows carry every kind of plot data the HTML report draws
# (the keys documented in docs/claims.md, "Plot data").
PLOT_CLAIMS = textwrap.dedent(
    '''
    import numpy as np
    import pytest

    from polyaudit.claimspec import Check, ClaimSpec, Statistic
    from polyaudit.verdict import Evidence

    def _spec(claim, check):
        return ClaimSpec(claim, 1, f"{claim} stand-in", "tests", (Statistic("fake", "fake"),),
                         (Check(check, "fake", sites=("mlp_pre",)),))

    def _c4_layers(slope):
        out = []
        for layer in range(4):
            alpha = -0.8 - slope * layer
            n = np.arange(1, 65)
            out.append({"layer": layer, "alpha": alpha, "ci": [alpha - 0.05, alpha + 0.05], "r2": 0.99,
                        "ranks": [3, 40], "intercept": 1.0, "spectrum": (np.e * n ** alpha).tolist()})
        return out

    def _details(claim, site):
        if claim == "C1":
            return {"baseline": site.split("/")[1], "methods": {
                m: {"H": h, "ami": 0.1} for m, h in (("polytope", 1.0 - 0.1 * int(site[5])), ("direction", 1.2),
                                                     ("neuron", 1.3), ("random", 1.5))}}
        if claim == "C2" and site.endswith("diff-vs-same"):
            return {"crossings_diff": [5, 7, 9, 8, 6, 10], "crossings_same": [1, 2, 0, 3, 2, 1]}
        if claim == "C2":
            return {"n_paths": 12, "steps": 16, "boundary_density": [float(i % 3) for i in range(16)],
                    "semantic_change": [0.01 * (i % 5) for i in range(16)]}
        if claim == "C3":
            return {"grid": [0.25, 0.5, 1, 2, 4], "reference": 1.0, "mean_kl": [0.3, 0.1, 0, 0.2, 0.6],
                    "mean_crossings": [5, 2, 0, 3, 8], "flip_rate": [0.2, 0, 0, 0.1, 0.4]}
        if claim == "C4":
            return {"layers": _c4_layers(0.1 if site == "resid" else 0.05)}
        if claim == "C5" and site == "resid":
            return {"test_rates": [0, 0.2, 0.4], "capacity_bound": [1, 0.8, 0.6],
                    "retained_by_train_rate": {f"{p:g}": [1, 1 - 0.5 / (1 + 4 * p), 0.5] for p in (0.0, 0.4, 0.8)}}
        if claim == "C5":
            return {"q": 0.2, "layers": [{"layer": l, "alpha": -0.8 - 0.1 * l, "loss_increase": 0.5 - 0.1 * l}
                                         for l in range(4)]}
        return {"layers": [{"layer": l, "alpha": -0.8 - 0.1 * l, "action": 2.0 - 0.3 * l,
                            "relative_action": 1.0 - 0.2 * l} for l in range(4)]}

    def _conclude(subject, audit, claim, site):
        ev = Evidence(claim, 1, site, "fake", effect=0.5, ci=(0.2, 0.8), p=0.001, n=50,
                      details=_details(claim, site), notes=f"{claim} stand-in")
        audit.conclude(ev, subject)

    @pytest.mark.claim(_spec("C1", "purity"), check="purity")
    @pytest.mark.parametrize("site", [f"layer{l}/{b}" for l in range(3) for b in ("direction", "random")])
    def test_c1(subject, site, audit):
        _conclude(subject, audit, "C1", site)

    @pytest.mark.claim(_spec("C2", "paths"), check="paths")
    @pytest.mark.parametrize("site", ["resid/linear", "resid/diff-vs-same"])
    def test_c2(subject, site, audit):
        _conclude(subject, audit, "C2", site)

    @pytest.mark.claim(_spec("C3", "scale"), check="scale")
    def test_c3(subject, audit):
        _conclude(subject, audit, "C3", "resid/scale")

    @pytest.mark.claim(_spec("C4", "alpha-depth"), check="alpha-depth")
    @pytest.mark.parametrize("site", ["resid", "mlp_pre"])
    def test_c4(subject, site, audit):
        _conclude(subject, audit, "C4", site)

    @pytest.mark.claim(_spec("C5", "dropout"), check="dropout")
    @pytest.mark.parametrize("site", ["resid", "mlp_pre"])
    def test_c5(subject, site, audit):
        _conclude(subject, audit, "C5", site)

    @pytest.mark.claim(_spec("C6", "action"), check="action")
    def test_c6(subject, audit):
        _conclude(subject, audit, "C6", "mlp_pre")
    '''
)
# C1 purity, C2 paths + crossings, C3 scale, C4 alpha-depth + 2 spectra, C5 family + layers, C6
EXPECTED_PLOTS_PER_MODEL = 10
