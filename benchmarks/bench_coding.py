"""The coding-theory claims on the default profile, from an empty cache: the whole default dropout
family (rates 0, .2, .4, .6, .8 x seeds 0, 1, 2 x `mlp-digits` and `conv-ae-digits`) trained, its
activations captured, and C5 (family, and single checkpoint) plus C6 measured; the split is
training / capture / analysis. Budget (issue 4): training <= 3 min, everything <= 5 min on 2 cores.
Also the random projections of C6 as one matrix product against a Python loop over projections."""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import interleaved

FAMILIES = ("zoo:mlp-digits", "zoo:conv-ae-digits")


def _projection_ratio(repeats: int = 3) -> dict[str, Any]:
    """C6's projections of a [512 frames, 256 units] trajectory on 1000 directions: one product
    versus a loop over directions (same numbers)."""
    from polyaudit.measures.action import (
        projection_energies,
        projection_matrix,
        successive_differences,
    )

    rng = np.random.default_rng(0)
    traj = np.cumsum(rng.standard_normal((8, 64, 256)), axis=1)
    r = projection_matrix(256, 1000, rng)

    def loop() -> None:
        for k in range(traj.shape[0]):
            d = successive_differences(traj[k])
            for j in range(r.shape[1]):
                float(np.sum((d @ r[:, j]) ** 2))

    t = interleaved({"one_matmul": lambda: projection_energies(traj, r), "python_loop": loop}, repeats=repeats)
    return {"seconds": {k: round(v, 4) for k, v in t.items()},
            "loop_over_matmul_ratio": round(t["python_loop"] / t["one_matmul"], 1)}


def run(profile: str = "default") -> dict[str, Any]:
    from polyaudit.analyses import c5, c6
    from polyaudit.interventions.dropout_runs import measure_family, measure_single
    from polyaudit.interventions.stimuli import collect
    from polyaudit.interventions.unit_dropout import unit_site_kind
    from polyaudit.models.family import parse_family
    from polyaudit.profiles import get_profile
    from polyaudit.run.family import load_family
    from polyaudit.run.runtime import RunOptions, Runtime
    from polyaudit.threads import compute_threads

    out: dict[str, Any] = {"profile": profile, "families": {}}
    with tempfile.TemporaryDirectory() as cache:
        rt = Runtime(RunOptions(cache_dir=cache, profile=get_profile(profile)))
        prof = rt.options.profile
        totals = {"training": 0.0, "capture": 0.0, "analysis": 0.0}
        for spec in FAMILIES:
            t0 = time.perf_counter()
            fam = load_family(parse_family(spec), rt)
            t1 = time.perf_counter()
            for _, sub in fam.members:
                with compute_threads(sub.loaded.model):  # as measure_family captures
                    sub.capture().get_kind(unit_site_kind(sub.adapter))
            t2 = time.perf_counter()
            measured = measure_family([(m.rate, sub) for m, sub in fam.members], rng=rt.rng("bench", spec),
                                      batch_size=prof.batch_size)
            evidence = c5.SPEC.adjust(c5.family_evidence(measured, n_boot=prof.n_boot, n_perm=prof.n_perm,
                                                           rng=rt.rng("stats")))
            t3 = time.perf_counter()
            first = fam.members[0][1]  # the family's rate-0 seed-0 model: C5 single + C6 on it
            with compute_threads(first.loaded.model):
                for kind in ("resid", "mlp_pre"):
                    first.capture().get_kind(kind)
            t4 = time.perf_counter()
            layers, increase, extra = measure_single(first, rng=rt.rng("single"), batch_size=prof.batch_size)
            single = c5.single_evidence(layers, increase, site=extra["unit_site"], n_boot=prof.n_boot,
                                        rng=rt.rng("single-boot"), extra=extra,
                                        rank_bounds=[first.adapter.rank_bound(d.site) for d in layers])
            c6_rows = {}
            for kind in ("resid", "mlp_pre"):
                layers, trajs, _ = collect(first, kind, rt.rng("stimulus", kind))
                c6_rows[kind] = c6.action_alpha(layers, trajs, site=kind, n_boot=prof.n_boot, rng=rt.rng("c6", kind),
                                                rank_bounds=[first.adapter.rank_bound(d.site) for d in layers])
            t5 = time.perf_counter()
            split = {"training": t1 - t0, "capture": (t2 - t1) + (t4 - t3), "analysis": (t3 - t2) + (t5 - t4)}
            for k, v in split.items():
                totals[k] += v
            out["families"][spec] = {
                "models": len(fam.members),
                "seconds": {k: round(v, 2) for k, v in split.items()},
                "family_effects": {k: [round(ev.effect, 3), ev.p_adj] for k, ev in evidence.items()},
                "single_checkpoint_effect": round(single.effect, 3) if single.error is None else single.error,
                "c6_effects": {k: (round(ev.effect, 3) if ev.error is None else ev.error) for k, ev in c6_rows.items()},
            }
        out["seconds"] = {k: round(v, 2) for k, v in totals.items()}
        out["seconds"]["total"] = round(sum(totals.values()), 2)
        out["budget_seconds"] = {"training": 180, "total": 300}
        out["within_budget"] = bool(totals["training"] <= 180 and sum(totals.values()) <= 300)
    out["projections"] = _projection_ratio()
    return out
