"""Pick the evaluator of the rest of a model from a site (see `polyaudit.interventions.downstream`)."""

from __future__ import annotations

from typing import Any

from polyaudit.errors import PolyauditError
from polyaudit.interventions.downstream import (
    AdapterDownstream,
    Contexts,
    SequentialDownstream,
    after_site,
    later_sites,
)
from polyaudit.interventions.module_downstream import module_downstream
from polyaudit.interventions.prefix_cache import CACHED_FAMILIES, PrefixCachedDownstream
from polyaudit.models.base import LoadedModel, Site
from polyaudit.models.conv import ConvAdapter
from polyaudit.models.sequential import SequentialAdapter


def make_downstream(loaded: LoadedModel, site: Site | None, contexts: Contexts, *, max_rows: int = 256) -> Any:
    """Exact evaluator for piecewise-linear models (numpy walk for MLPs, gated module walk for CNNs),
    adapter-hook evaluator otherwise."""
    ad = loaded.adapter
    if isinstance(ad, SequentialAdapter) and ad.piecewise_linear:
        rest = after_site(loaded.model, site)  # type: ignore[arg-type]
        try:
            return SequentialDownstream(rest)
        except PolyauditError:  # ReLU net with modules the numpy walk cannot read (Conv2d, ...)
            pass
    not_exact: str | None = None
    if isinstance(ad, (SequentialAdapter, ConvAdapter)) and ad.piecewise_linear:
        exact, not_exact = module_downstream(ad, site, contexts, max_rows=max_rows)
        if exact is not None:  # CNNs, ResNets: the gated float64 copy of the whole model
            return exact
    encoder = bool(getattr(getattr(ad, "layout", None), "encoder", False))
    if ad.input_kind == "tokens" and not encoder and site is not None and ad.family in CACHED_FAMILIES:
        return PrefixCachedDownstream(ad, site, later_sites(ad, site), contexts, max_rows=max_rows)
    down = AdapterDownstream(ad, site, later_sites(ad, site), contexts, max_rows=max_rows,
                             causal=not encoder)
    down.not_exact = not_exact
    return down
