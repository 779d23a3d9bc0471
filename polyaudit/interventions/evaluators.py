"""Pick the evaluator of the rest of a model from a site (see `polyaudit.interventions.downstream`)."""

from __future__ import annotations

from typing import Any

from polyaudit.errors import PolyauditError
from polyaudit.interventions.downstream import (
    AdapterDownstream,
    Contexts,
    SequentialDownstream,
    later_sites,
)
from polyaudit.interventions.module_downstream import module_downstream
from polyaudit.interventions.prefix_cache import PrefixCachedDownstream
from polyaudit.models.base import LoadedModel, Site


def make_downstream(loaded: LoadedModel, site: Site | None, contexts: Contexts, *, max_rows: int = 256,
                    sample_units: int = 0, seed: int = 0) -> Any:
    """Exact evaluator where the adapter allows exact walks (numpy walk for a flat nn.Sequential,
    gated module walk for CNNs), prefix-cached evaluator for causal LMs, adapter hooks otherwise.
    `sample_units` > 0: an approximate evaluator with more later units than that reads the codes of
    that many, drawn with `seed` (`AdapterDownstream.sample_units`)."""
    ad = loaded.adapter
    caps = ad.capabilities
    not_exact: str | None = None
    if caps.exact_walk:
        rest = ad.modules_after(site)
        if rest is not None:
            try:
                return SequentialDownstream(rest)
            except PolyauditError:  # ReLU net with modules the numpy walk cannot read (Conv2d, ...)
                pass
        exact, not_exact = module_downstream(ad, site, contexts, max_rows=max_rows)
        if exact is not None:  # CNNs, ResNets: the gated float64 copy of the whole model
            return exact
    if caps.prefix_cache and site is not None and (caps.output_head or ad.pooling is None):
        down: AdapterDownstream = PrefixCachedDownstream(ad, site, later_sites(ad, site), contexts, max_rows=max_rows)
    else:
        down = AdapterDownstream(ad, site, later_sites(ad, site), contexts, max_rows=max_rows, causal=caps.causal)
        down.not_exact = not_exact
    down.sample_units(sample_units, seed)
    return down
