"""pytest-xdist workers share the cache: a (model, probe) is captured once and a claim's
measurement computed once across processes; the others wait for the lock and read the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

CAPTURE = textwrap.dedent("""
    import json, sys
    from polyaudit.run.runtime import RunOptions, Runtime
    from polyaudit.profiles import get_profile
    rt = Runtime(RunOptions(models=("zoo:mlp-digits",), cache_dir=sys.argv[1], profile=get_profile("quick")))
    subject = rt.subject("zoo:mlp-digits")
    subject.request(["mlp_pre", "resid"])
    cap = subject.capture()
    data = cap.get_kind("mlp_pre")
    print(json.dumps({"passes": cap.stats.n_forward_passes, "hits": cap.stats.cache_hits,
                      "sum": float(sum(d.samples.astype("float64").sum() for d in data))}))
""")

MEASURE = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from polyaudit.store.results import load_or_compute
    from polyaudit.verdict import Evidence

    def compute():
        Path(sys.argv[2], f"computed-{os.getpid()}").write_text("x")
        time.sleep(1.0)
        return {"s": Evidence(claim="C4", claim_version=1, site="s", statistic="x", effect=0.5,
                              ci=(0.1, 0.9), p=0.01, n=10)}

    evidence, hit = load_or_compute(Path(sys.argv[1]), "k" * 64, compute)
    print(json.dumps({"hit": hit, "effect": evidence["s"].effect}))
""")


def _run_together(script: str, *args: str) -> list[dict[str, object]]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def test_two_processes_capture_once(tmp_path: Path) -> None:
    zoo = Path(os.environ["POLYAUDIT_CACHE"]) / "zoo"
    if zoo.is_dir():  # start from the session's trained zoo models: this test is about the capture
        import shutil

        shutil.copytree(zoo, tmp_path / "zoo")
    a, b = _run_together(CAPTURE, str(tmp_path))
    assert sorted([a["passes"], b["passes"]]) == [0, 1]  # one process captured, the other read it
    assert a["sum"] == b["sum"]
    assert len(list((tmp_path / "activations").rglob("*.pact"))) > 0


def test_two_processes_measure_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    a, b = _run_together(MEASURE, str(tmp_path / "results"), str(marks))
    assert len(list(marks.iterdir())) == 1
    assert sorted([a["hit"], b["hit"]]) == [False, True]
    assert np.isclose(a["effect"], b["effect"])
