"""polyaudit from Python: audit a model held in memory and look at the result.

    python examples/api_quickstart.py [OUT_DIR]

(The same code runs in a notebook cell; there the result renders as a table by itself.) The test
suite executes this file (tests/test_api.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import polyaudit


def small_net() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A three-layer ReLU MLP and labelled inputs (two binary features -> three classes)."""
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return net, x, y


def main(out: Path) -> None:
    net, x, y = small_net()
    result = polyaudit.audit(net, probe=(x, y), name="small net", profile="quick", claims=["C1", "C4"])
    print(result)
    frame = result.to_pandas()
    print(frame[["claim", "site", "effect", "ci_lo", "ci_hi", "p_adj", "verdict", "origin"]].to_string())
    out.mkdir(parents=True, exist_ok=True)
    print("wrote", result.save_html(out / "audit.html"), result.save_markdown(out / "audit.md"),
          result.to_json(out / "audit.json"))
    html = result._repr_html_()  # what a notebook shows
    assert html.startswith("<style>") and "<table" in html


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("polyaudit-example"))
