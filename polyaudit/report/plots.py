"""Plots for the HTML report (matplotlib, Agg, PNG embedded as data: URIs; no pyplot state).

A claim's spec names its plots and the `details` keys each reads (`ClaimSpec.plots`); `PLOTTERS`
draws them by name. A claim without that data simply has no plot. The keys (documented in
docs/claims.md, "Plot data"):

- C4 `layers`: [{layer, alpha, ci, spectrum, ranks, intercept, r2}] -> alpha vs depth with the CI band
  per site; log-log eigenspectra with the fitted power laws.
- C1 `methods`: {polytope: {H, ...}, direction: {H, ...}, ...} per row, at the row's layer (`layer`
  in details, else the first number in the site); or `purity`: [{layer, polytope, direction, ...}]
  -> H(label | cluster) per layer and baseline.
- C2 `boundary_density`, `semantic_change` (mean per step) -> boundaries and semantics along paths;
  `crossings_diff`, `crossings_same` -> crossings of different- vs same-label paths.
- C3 `grid`, `mean_kl`, `mean_crossings`, `reference` -> semantic change vs scale (or t) with the
  boundaries crossed.
- C5 `test_rates`, `retained_by_train_rate`, `capacity_bound` -> robustness vs test-time dropout per
  training rate; `layers`: [{layer, alpha, loss_increase}] -> loss under unit dropout vs alpha.
- C6 `layers`: [{layer, alpha, relative_action or action}] -> action vs alpha.

Drawing is most of what a warm rerun's reports cost (about a second for a handful of PNGs), and a
plot is a function of its rows: `make_plots(rows, cache=folder)` keeps each (claim, model) group's
plots under a hash of what they are drawn from (the rows without the fields no plot reads and a
warm run changes, this file's source, matplotlib's version), so an unchanged group is read back,
not drawn again; a changed row, plotting code or matplotlib draws afresh, and an unreadable entry
is drawn again and replaced.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Plot:
    claim: str
    kind: str
    model: str
    title: str
    caption: str
    png_b64: str | None = None
    problem: str | None = None  # why the plot could not be drawn


def _figure(n_axes: int = 1, *, width: float = 6.4, height: float = 3.6, sharex: bool = False) -> Any:
    from matplotlib.figure import Figure

    h = height * (1 if n_axes == 1 else 0.7 * n_axes)
    fig = Figure(figsize=(width, h))
    # fixed margins (in inches) instead of a layout engine: as readable, and twice as fast
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.75 / width, bottom=0.5 / h, top=1 - 0.15 / h,
                        hspace=0.12 if sharex else 0.35)
    axes = fig.subplots(n_axes, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _layer_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _nums(xs: Iterable[Any]) -> list[float]:
    return [float(x) if isinstance(x, (int, float)) and x is not None else math.nan for x in xs]


def _details(row: Row) -> Mapping[str, Any]:
    d = row.get("details")
    return d if isinstance(d, Mapping) else {}


# -- C4 ---------------------------------------------------------------------------------------


def _alpha_depth(rows: Sequence[Row]) -> list[tuple[str, str, str, Any]]:
    rows = [r for r in rows if _details(r).get("layers")]
    if not rows:
        return []
    fig, (ax,) = _figure()
    for r in rows:
        layers = _details(r)["layers"]
        x = [int(lay.get("layer", i)) for i, lay in enumerate(layers)]
        y = _nums(lay.get("alpha") for lay in layers)
        ci = [lay.get("ci") or (None, None) for lay in layers]
        (line,) = ax.plot(x, y, marker="o", label=f"{r.get('site')} (rho {_fmt(r.get('effect'))})")
        ax.fill_between(x, _nums(c[0] for c in ci), _nums(c[1] for c in ci), color=line.get_color(), alpha=0.2)
    ax.axhline(-1.0, color="grey", linestyle="--", linewidth=1, label="alpha = -1")
    _layer_axis(ax)
    ax.set_ylabel("power-law exponent alpha")
    ax.legend(fontsize=8)
    return [("alpha-depth", "alpha vs depth", "Fitted exponent per layer with its 95% bootstrap CI band, per site.", fig)]


def _fit_line(spectrum: Sequence[float], lay: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    ranks, alpha, icpt = lay.get("ranks"), lay.get("alpha"), lay.get("intercept")
    if not ranks or len(ranks) != 2 or not isinstance(alpha, (int, float)):
        return None
    lo, hi = int(ranks[0]), int(ranks[1])
    n = [float(k) for k in range(max(lo, 1), max(hi, lo + 1) + 1)]
    obs = [(k, spectrum[int(k) - 1]) for k in n if int(k) - 1 < len(spectrum) and spectrum[int(k) - 1] > 0]
    if not obs:
        return None
    if isinstance(icpt, (int, float)) and math.isfinite(icpt):
        # natural-log intercept unless base-10 fits the observed spectrum better
        err_e = sum(abs(math.log(v) - (icpt + alpha * math.log(k))) for k, v in obs)
        err_10 = sum(abs(math.log10(v) - (icpt + alpha * math.log10(k))) for k, v in obs)
        scale = math.exp(icpt) if err_e <= err_10 else 10.0 ** icpt
    else:  # anchor the fitted slope at the median of the data
        logs = sorted(math.log(v) - alpha * math.log(k) for k, v in obs)
        scale = math.exp(logs[len(logs) // 2])
    return n, [scale * k**alpha for k in n]


def _spectra(rows: Sequence[Row]) -> list[tuple[str, str, str, Any]]:
    from matplotlib import colormaps

    out = []
    for r in rows:
        layers = [lay for lay in _details(r).get("layers") or [] if lay.get("spectrum")]
        if not layers:
            continue
        fig, (ax,) = _figure(height=4.0)
        cmap = colormaps["viridis"]
        for i, lay in enumerate(layers):
            spec = [v for v in _nums(lay["spectrum"])]
            color = cmap(i / max(len(layers) - 1, 1))
            ranks = [k + 1 for k, v in enumerate(spec) if v > 0]
            ax.loglog(ranks, [spec[k - 1] for k in ranks], color=color, linewidth=1,
                      label=f"layer {lay.get('layer', i)}: alpha {_fmt(lay.get('alpha'))}")
            line = _fit_line(spec, lay)
            if line is not None:
                ax.loglog(line[0], line[1], color=color, linestyle="--", linewidth=1.5)
        ax.set_xlabel("rank n")
        ax.set_ylabel("eigenvalue lambda_n")
        ax.legend(fontsize=7, ncol=2)
        out.append(("spectra", f"eigenspectra ({r.get('site')})",
                    "Covariance eigenvalues per layer (log-log); dashed: the fitted power law over the fit range.", fig))
    return out


# -- C1 ---------------------------------------------------------------------------------------


def _layer_of(row: Row, order: dict[str, int]) -> float:
    """The row's layer: `details.layer`, else the number in its site (`blocks.3.mlp.pre/direction`),
    else the order in which its site (without the `/baseline` part) first appears."""
    layer = _details(row).get("layer")
    if isinstance(layer, (int, float)):
        return float(layer)
    prefix = str(row.get("site", "")).split("/")[0]
    found = re.search(r"\d+", prefix)
    return float(found.group()) if found else float(order.setdefault(prefix, len(order)))


def _purity(rows: Sequence[Row]) -> list[tuple[str, str, str, Any]]:
    points: dict[str, dict[float, float]] = {}
    order: dict[str, int] = {}
    for r in rows:
        d = _details(r)
        methods = d.get("methods")
        if isinstance(methods, Mapping):  # C1 rows: {method: {"H": bits, "ami": ..}} at the row's layer
            for method, entry in methods.items():
                if isinstance(entry, Mapping) and isinstance(entry.get("H"), (int, float)):
                    points.setdefault(str(method), {})[_layer_of(r, order)] = float(entry["H"])
        for entry in d.get("purity") or []:
            for method, value in entry.items():
                if method != "layer" and isinstance(value, (int, float)):
                    points.setdefault(method, {})[float(entry.get("layer", 0))] = float(value)
    if not points:
        return []
    fig, (ax,) = _figure()
    for method in sorted(points, key=lambda m: (m != "polytope", m)):
        xs = sorted(points[method])
        ax.plot(xs, [points[method][x] for x in xs], marker="o", label=method,
                linewidth=2.5 if method == "polytope" else 1.2)
    _layer_axis(ax)
    ax.set_ylabel("H(label | cluster), bits (lower: purer)")
    ax.legend(fontsize=8)
    return [("purity", "cluster purity per layer",
             "Conditional label entropy of polytope clusters and of each baseline clustering, per layer.", fig)]


# -- C2, C3, C5, C6 -----------------------------------------------------------------------------


def _paths(rows: Sequence[Row]) -> list[tuple[str, str, str, Any]]:
    out = []
    for r in rows:
        d = _details(r)
        density, semantic = d.get("boundary_density"), d.get("semantic_change")
        if density:
            fig, (top, bottom) = _figure(2, height=3.2, sharex=True)
            t = [(i + 0.5) / len(density) for i in range(len(density))]
            top.plot(t, _nums(density), color="tab:red", marker=".")
            if semantic:
                bottom.plot(t[: len(semantic)], _nums(semantic), color="tab:blue", marker=".")
            top.set_ylabel("boundaries crossed\n(mean per step)")
            bottom.set_ylabel("semantic change\n(mean JS, bits)")
            bottom.set_xlabel("position along the path t")
            out.append(("paths", f"boundaries and semantics along paths ({r.get('site')})",
                        f"Mean over {d.get('n_paths', '?')} different-label paths, per step: polytope boundaries "
                        "crossed downstream (top) and change of the output distribution (bottom).", fig))
        elif d.get("crossings_diff") and d.get("crossings_same"):
            fig, (ax,) = _figure()
            ax.hist([_nums(d["crossings_diff"]), _nums(d["crossings_same"])], bins=20,
                    label=["different labels", "same label"], color=["tab:red", "tab:blue"])
            ax.set_xlabel("boundaries crossed along the path")
            ax.set_ylabel("paths")
            ax.legend(fontsize=8)
            out.append(("crossings", f"crossings: different vs same label ({r.get('site')})",
                        "Total boundaries crossed per path, for different-label and same-label pairs.", fig))
    return out


def _scales(rows: Sequence[Row]) -> list[tuple[str, str, str, Any]]:
    out = []
    for r in rows:
        d = _details(r)
        grid, kl, cross = d.get("grid"), d.get("mean_kl"), d.get("mean_crossings")
        if not grid or not kl:
            continue
        x = _nums(grid)
        fig, (ax,) = _figure()
        ax.plot(x, _nums(kl), color="tab:blue", marker="o", label="semantic change (mean KL, bits)")
        if all(v > 0 for v in x):
            ax.set_xscale("log")
            ax.set_xticks(x, labels=[f"{v:g}" for v in x])
            ax.minorticks_off()
        direction = "direction" in str(r.get("site"))
        ax.set_xlabel("t (h -> h + t v)" if direction else "scale c (h -> c h)")
        ax.set_ylabel("semantic change vs reference", color="tab:blue")
        if cross:
            twin = ax.twinx()
            twin.plot(x, _nums(cross), color="tab:red", marker="s")
            twin.set_ylabel("boundaries crossed (mean)", color="tab:red")
        ref = d.get("reference")
        if isinstance(ref, (int, float)):
            ax.axvline(float(ref), color="grey", linestyle=":", linewidth=1)
        out.append(("scale", f"semantic change vs {'t' if direction else 'scale'} ({r.get('site')})",
                    "Moving an activation along a ray keeps (or barely changes) its direction; the output "
                    "changes later, together with the polytope boundaries crossed.", fig))
    return out


def _dropout(rows: Sequence[Row]) -> list[tuple[str, str, str, Any]]:
    out = []
    family = [r for r in rows if _details(r).get("retained_by_train_rate") and _details(r).get("test_rates")][:6]
    if family:
        fig, axes = _figure(len(family), height=3.0, sharex=True)
        for ax, r in zip(axes, family, strict=True):
            d = _details(r)
            q = _nums(d["test_rates"])
            for rate, curve in sorted(d["retained_by_train_rate"].items(), key=lambda kv: float(kv[0])):
                ax.plot(q[: len(curve)], _nums(curve), marker="o", label=f"trained with dropout {rate}")
            if d.get("capacity_bound"):
                ax.plot(q, _nums(d["capacity_bound"]), color="grey", linestyle="--", label="bound 1 - q")
            ax.set_ylabel(f"retained ({r.get('site')})", fontsize=8)
        axes[0].legend(fontsize=7)
        axes[-1].set_xlabel("test-time unit dropout q")
        out.append(("dropout", "robustness vs dropout",
                    "Performance retained under test-time unit dropout, per training dropout rate and layer.", fig))
    for r in rows:
        layers = [lay for lay in _details(r).get("layers") or [] if "loss_increase" in lay and "alpha" in lay]
        if not layers:
            continue
        fig, (ax,) = _figure()
        _scatter_layers(ax, layers, "alpha", "loss_increase")
        ax.set_xlabel("power-law exponent alpha")
        ax.set_ylabel(f"loss increase under unit dropout q={_fmt(_details(r).get('q'))}")
        out.append(("dropout-layers", f"loss under unit dropout vs alpha ({r.get('site')})",
                    "One point per layer: flatter spectra should lose less.", fig))
    return out


def _scatter_layers(ax: Any, layers: Sequence[Mapping[str, Any]], xkey: str, ykey: str) -> None:
    xs, ys = _nums(lay[xkey] for lay in layers), _nums(lay[ykey] for lay in layers)
    ax.scatter(xs, ys)
    for lay, x, y in zip(layers, xs, ys, strict=True):
        ax.annotate(str(lay.get("layer", "")), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")


def _action(rows: Sequence[Row]) -> list[tuple[str, str, str, Any]]:
    out = []
    for r in rows:
        layers = [lay for lay in _details(r).get("layers") or [] if "alpha" in lay
                  and ("relative_action" in lay or "action" in lay)]
        if not layers:
            continue
        key = "relative_action" if all("relative_action" in lay for lay in layers) else "action"
        fig, (ax,) = _figure()
        _scatter_layers(ax, layers, "alpha", key)
        ax.set_xlabel("power-law exponent alpha")
        ax.set_ylabel(key.replace("_", " ") + " of random projections")
        out.append(("action-alpha", f"action vs alpha ({r.get('site')})",
                    "One point per layer: mean energy of random projections of a smooth stimulus against the layer's alpha.", fig))
    return out


Plotter = Callable[[Sequence[Row]], list[tuple[str, str, str, Any]]]
PLOTTERS: dict[str, Plotter] = {  # by the plot names claims declare (ClaimSpec.plots)
    "purity": _purity, "paths": _paths, "scales": _scales, "alpha-depth": _alpha_depth, "spectra": _spectra,
    "dropout": _dropout, "action": _action,
}


def plotters_of(claim: str) -> tuple[Plotter, ...]:
    """The plotters of a claim polyaudit ships, in the order its spec declares its plots."""
    from polyaudit.analyses.catalog import CLAIMS

    spec = CLAIMS.get(claim)
    return () if spec is None else tuple(PLOTTERS[p.name] for p in spec.plots)


def _fmt(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


UNDRAWN = ("origin", "nodeid")  # row fields no plot reads: where the numbers came from, the test's path
CACHE_FORMAT = 1


def _draw(claim: str, model: str, group: Sequence[Row]) -> list[Plot]:
    out: list[Plot] = []
    for plotter in plotters_of(claim):
        try:  # a claim's odd details cost its plot, never the report
            drawn = [Plot(claim, kind, model, title, caption, png_b64=_png(fig))
                     for kind, title, caption, fig in plotter(group)]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError,
                RuntimeError) as e:
            drawn = [Plot(claim, plotter.__name__.strip("_"), model, f"{claim} plot", "",
                          problem=f"{type(e).__name__}: {e}")]
        out.extend(drawn)
    return out


def plot_key(claim: str, model: str, group: Sequence[Row]) -> str:
    """The hash a group's plots are kept under: its rows (less `UNDRAWN`), the plots the claim's spec
    declares, the drawing code, matplotlib."""
    import matplotlib

    names = ",".join(p.__name__ for p in plotters_of(claim))
    h = hashlib.sha256(f"{CACHE_FORMAT}|{matplotlib.__version__}|{claim}|{model}|{names}\n".encode())
    h.update(Path(__file__).read_bytes())
    rows = [{k: v for k, v in r.items() if k not in UNDRAWN} for r in group]
    h.update(json.dumps(rows, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def _cached(path: Path) -> list[Plot] | None:
    try:
        doc = json.loads(path.read_text())
        return [Plot(**p) for p in doc["plots"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: drawn again


def make_plots(rows: Sequence[Row], cache: Path | None = None) -> list[Plot]:
    """Every plot the rows have data for, per claim and model (in row order); with `cache` (a
    folder), each group's plots are read from there when its rows were drawn before (see the
    module docstring), else drawn and kept there."""
    out: list[Plot] = []
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((str(r.get("claim")), str(r.get("model"))), []).append(r)
    for (claim, model), group in groups.items():
        if not plotters_of(claim):
            continue
        if cache is None:
            out.extend(_draw(claim, model, group))
            continue
        path = cache / f"{plot_key(claim, model, group)}.json"
        plots = _cached(path)
        if plots is None:
            plots = _draw(claim, model, group)
            _keep(path, plots)
        else:
            with contextlib.suppress(OSError):
                os.utime(path)  # used now: the cache cap prunes the least recently used first
        out.extend(plots)
    return out


def _keep(path: Path, plots: list[Plot]) -> None:
    """Write a group's plots to the cache; a cache that cannot be written only costs the next draw."""
    from polyaudit.serial import atomic_write_text

    with contextlib.suppress(OSError):
        atomic_write_text(path, json.dumps({"plots": [dataclasses.asdict(p) for p in plots]}))
