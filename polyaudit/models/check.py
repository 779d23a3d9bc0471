"""`check_adapter`: the conformance suite of adapters, a user's own included (as scikit-learn's
`check_estimator` is for estimators).

    from polyaudit.models.check import check_adapter

    check_adapter(MyAdapter(model), inputs)                   # PolyauditError: one line per problem
    findings = check_adapter(adapter, inputs, strict=False)   # or the list of Findings ([] = conforms)

`inputs` is a small batch the model takes (token ids [B, L] or vectors/images [B, ...]); token
adapters that know their `vocab_size` may omit it (a seeded random batch [2, 8] is used). What is
checked, each Finding naming its check (and site):

- site_table: at least one layer; `mlp_pre` among the site kinds; one site per layer and kind, in
  layer order, `site(kind, l) == sites(kind)[l]`; every named module exists; no two sites hook the
  same tensor (module, call and tap); `rank_bound` is None or positive.
- fires: in one full forward every site fires exactly once, shallow to deep (`mlp_pre` before
  `mlp_out` before `resid` of a layer, before the next layer): a site table one layer off fires
  out of order or twice; `mlp_out` is as wide as `resid` (it is added to the residual stream).
- manual_hook: what `hooks()` hands a reader equals a plain forward hook (pre-hook for tap
  "input") on the named module, same forward, same call; OPT-style flat MLPs compared reshaped.
- run_until: reading one site with `run_until` gets `select(site, t)` of that tensor (t itself
  unless spatial_positions), and stops there: no later site fires and the output head never runs.
- replacement: `run_with_replacement` with the identity equals `logits()`; negating (or zeroing)
  the site changes them (a write that never reaches the output is a bug).
- capabilities: the declared flags agree with the model: flags of token models (causal, encoder,
  gated_mlp, prefix_cache) only on token adapters, causal and encoder not both, prefix_cache only
  when causal, exact_walk only when piecewise_linear, piecewise_linear matching a known
  activation; output_head: logits are [B, L, vocab_size] for token models with a head, not
  vocabulary-wide without one, and the `output_head()` module (whose presence needs the flag) runs
  once per forward on the final hidden states; causal: changing the last token leaves every
  earlier position's logits as they were (encoder: changes them); prefix_cache: one token after
  `prefix_cache()` gives the full forward's last logits and last-position site reads, in every row,
  leaving the cache as it was; feature_maps: `feature_maps()` is the whole site tensor per input
  and some site is a spatial map; spatial_positions: a `position_selector` and `positions_per_input`
  samples per input ([B, C] or [B, G, C]); without it, one sample per input.
- modules_after: where the adapter returns the modules after a site, running them on the site's
  tensor (on the inputs for None) gives `logits()`.
- input_embedding: a token adapter's `input_embedding_site()` (when it names one) reads
  `input_embedding_weight()[ids]`, and writing it unchanged leaves the logits unchanged.

Comparisons of one computation with itself (manual hooks, run_until, identity replacement, the
embedding lookup) are exact unless `tolerance` is given; comparisons of two ways to compute the same
numbers (prefix cache, modules_after, causal) allow float rounding of the model's dtype. `gated_mlp`
is declared, not tested: nothing outside the model tells a gate from an up-projection.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from polyaudit.errors import PolyauditError
from polyaudit.models.base import PIECEWISE_LINEAR, SITE_KINDS, Adapter, Site, _first


@dataclass(frozen=True)
class Finding:
    """One way an adapter breaks the contract: which check, what is wrong, at which site."""

    check: str
    message: str
    site: str | None = None

    def __str__(self) -> str:
        return f"{self.check}{f' [{self.site}]' if self.site else ''}: {self.message}"


@dataclass
class _Run:
    """What the checks share: the adapter, its inputs, and one full forward's reads and logits."""

    adapter: Adapter
    inputs: torch.Tensor
    mask: torch.Tensor | None
    tolerance: float
    sites: list[Site]
    findings: list[Finding]
    reads: dict[Site, torch.Tensor]
    logits: torch.Tensor | None = None

    def fail(self, check: str, message: str, site: Site | None = None) -> None:
        self.findings.append(Finding(check, message, None if site is None else site.name))

    def same(self, a: torch.Tensor, b: torch.Tensor, approx: bool = False) -> bool:
        if a.shape != b.shape:
            return False
        tol = max(self.tolerance, _rounding(self.adapter.dtype) if approx else 0.0)
        if tol == 0.0:
            return torch.equal(a, b)
        return torch.allclose(a.double(), b.double(), rtol=tol, atol=tol * max(1.0, float(b.abs().max())))


def _rounding(dtype: torch.dtype) -> float:
    return 5e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4


def check_adapter(adapter: Adapter, inputs: torch.Tensor | None = None,
                  attention_mask: torch.Tensor | None = None, *, strict: bool = True,
                  tolerance: float = 0.0) -> list[Finding]:
    """Run every conformance check (see the module docstring) on `adapter` with `inputs`.

    strict: raise one PolyauditError listing every problem, one line each (return [] when none);
    otherwise return the Findings. A check that crashes is a finding, never a traceback."""
    if not isinstance(adapter, Adapter):
        raise PolyauditError(f"check_adapter takes a polyaudit Adapter, got a {type(adapter).__name__}")
    if inputs is None:
        inputs = _default_inputs(adapter)
    run = _Run(adapter, inputs, attention_mask, tolerance, [], [], {})
    steps: list[tuple[str, Callable[[_Run], None]]] = [
        ("site_table", _site_table), ("fires", _full_forward), ("run_until", _run_until),
        ("replacement", _replacement), ("capabilities", _capabilities), ("output_head", _output_head),
        ("causal", _causal), ("prefix_cache", _prefix_cache), ("feature_maps", _feature_maps),
        ("modules_after", _modules_after), ("input_embedding", _input_embedding),
    ]
    with torch.inference_mode():
        for name, step in steps:
            try:
                step(run)
            except Exception as e:  # a check that crashes is a finding about the adapter
                why = (str(e).strip().splitlines() or [""])[0]
                run.fail(name, f"raised {type(e).__name__}: {why}")
                if name in ("site_table", "fires"):  # every later check stands on these two
                    break
    if strict and run.findings:
        lines = "\n".join(f"  {f}" for f in run.findings)
        raise PolyauditError(f"the {adapter.family} adapter ({type(adapter).__name__}) fails "
                             f"{len(run.findings)} conformance check(s):\n{lines}")
    return [] if strict else run.findings


def _default_inputs(adapter: Adapter) -> torch.Tensor:
    vocab = adapter.vocab_size
    if adapter.input_kind == "tokens" and vocab:
        return torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0))
    raise PolyauditError(
        f"check_adapter needs example inputs for the {adapter.input_kind} model of the {adapter.family} "
        "adapter: pass inputs= (a small batch the model takes)")


# --- static ------------------------------------------------------------------------------------
def _site_table(run: _Run) -> None:
    """The findings of the site table; `run.sites`: the sites whose modules exist (the dynamic
    checks use them)."""
    ad = run.adapter
    if ad.n_layers < 1:
        run.fail("site_table", f"n_layers is {ad.n_layers}: an adapter names at least one layer")
    if "mlp_pre" not in ad.site_kinds:
        run.fail("site_table", "site_kinds lacks mlp_pre, which every claim reads")
    for kind in ad.site_kinds:
        if kind not in SITE_KINDS:
            run.fail("site_table", f"unknown site kind {kind!r}: kinds are {', '.join(SITE_KINDS)}")
    good: list[Site] = []
    for kind in [k for k in ad.site_kinds if k in SITE_KINDS]:
        sites = ad.sites(kind)
        if [(s.layer, s.kind) for s in sites] != [(layer, kind) for layer in range(ad.n_layers)]:
            run.fail("site_table", f"sites({kind!r}) are not one {kind} site per layer 0..{ad.n_layers - 1}")
            continue
        for layer, s in enumerate(sites):
            if ad.site(kind, layer) != s:
                run.fail("site_table", f"site({kind!r}, {layer}) differs from sites({kind!r})[{layer}]", s)
            if s.tap not in ("input", "output"):
                run.fail("site_table", f"tap {s.tap!r} is neither 'input' nor 'output'", s)
                continue
            try:
                ad.module(s)
            except (PolyauditError, AttributeError):
                run.fail("site_table", f"names module {s.path!r}, which the model lacks", s)
                continue
            bound = ad.rank_bound(s)
            if bound is not None and not (isinstance(bound, int) and bound > 0):
                run.fail("site_table", f"rank_bound is {bound!r}: give None or a positive int", s)
            good.append(s)
    hooked = Counter((s.path, s.call, s.tap) for s in good)
    for s in good:
        if hooked[(s.path, s.call, s.tap)] > 1:
            run.fail("site_table", f"hooks the same tensor ({s.module}, {s.tap}) as another site", s)
    run.sites = sorted(good)


# --- one full forward --------------------------------------------------------------------------
def _manual_hooks(run: _Run) -> tuple[list[Any], dict[tuple[str, str], list[torch.Tensor]]]:
    """Plain forward hooks on every named module, recording each call's tensor."""
    calls: dict[tuple[str, str], list[torch.Tensor]] = {}
    handles = []
    for s in run.sites:
        if (s.path, s.tap) in calls:
            continue
        got = calls.setdefault((s.path, s.tap), [])
        mod = run.adapter.module(s)
        if s.tap == "output":
            handles.append(mod.register_forward_hook(
                lambda _m, _a, out, got=got: got.append(_first(out).detach().clone())))
        else:
            handles.append(mod.register_forward_pre_hook(
                lambda _m, args, got=got: got.append(args[0].detach().clone())))
    return handles, calls


def _full_forward(run: _Run) -> None:
    """fires + manual_hook: one forward with the adapter's reads and plain hooks side by side."""
    ad = run.adapter
    order: list[Site] = []
    times: Counter[Site] = Counter()

    def reader(site: Site, t: torch.Tensor) -> None:
        times[site] += 1
        if site not in run.reads:
            run.reads[site] = t.detach().clone()
            order.append(site)

    handles, calls = _manual_hooks(run)
    try:
        with ad.hooks(reads=dict.fromkeys(run.sites, reader)):
            run.logits = ad.logits(run.inputs, run.mask)
    finally:
        for h in handles:
            h.remove()
    for s in run.sites:
        if times[s] == 0:
            run.fail("fires", "never fires in a full forward", s)
        elif times[s] > 1:
            run.fail("fires", f"fires {times[s]} times in one forward: give each call its own site (path#k)", s)
    for before, after in itertools.pairwise(order):
        if after.depth_key < before.depth_key:
            run.fail("fires", f"fires after {before.name}: sites must fire shallow to deep (a site table one "
                              "layer off?)", after)
    _widths(run)
    for s in order:
        got, made = run.reads[s], calls.get((s.path, s.tap), [])
        manual = made[s.call] if s.call < len(made) else None
        if manual is None or manual.numel() != got.numel() or not run.same(got, manual.reshape(got.shape)):
            run.fail("manual_hook", f"the adapter reads another tensor than a {s.tap} hook on {s.path!r} "
                                    f"(call {s.call}) sees", s)


def _widths(run: _Run) -> None:
    """An MLP's output is added to the residual stream: mlp_out and resid have one width."""
    by = {(s.kind, s.layer): t for s, t in run.reads.items()}
    for s, t in run.reads.items():
        res = by.get(("resid", s.layer))
        if s.kind == "mlp_out" and res is not None and t.shape[-1] != res.shape[-1]:
            run.fail("fires", f"mlp_out is {t.shape[-1]} wide, the residual stream {res.shape[-1]}: the MLP "
                              "output is added to the residual stream (the site table names the wrong module?)", s)


def _counting(counter: Counter[str], key: str) -> Callable[..., None]:
    def hook(*_: Any) -> None:
        counter[key] += 1
    return hook


def _keeping(got: list[torch.Tensor]) -> Callable[[Site, torch.Tensor], None]:
    return lambda _s, t: got.append(t.detach().clone())


def _run_until(run: _Run) -> None:
    """Each site alone: run_until reads select(site, t) and stops before anything later runs."""
    ad = run.adapter
    head = ad.output_head()
    for s in run.sites:
        ran: Counter[str] = Counter()
        got: list[torch.Tensor] = []
        later = [x for x in run.sites if x.depth_key > s.depth_key]
        handle = head.register_forward_hook(_counting(ran, "the output head")) if head is not None else None
        try:
            with ad.hooks(reads={x: _counting(ran, x.name) for x in later}):
                ad.run_until(run.inputs, run.mask, {s: _keeping(got)})
        finally:
            if handle is not None:
                handle.remove()
        if len(got) != 1:
            run.fail("run_until", f"the reader was called {len(got)} times (once expected)", s)
            continue
        if ran:
            run.fail("run_until", f"did not stop at the site: {', '.join(sorted(ran))} ran after it", s)
        full = run.reads.get(s)
        if full is not None:
            want = ad.select(s, full) if ad.capabilities.spatial_positions else full
            if not run.same(got[0], want):
                run.fail("run_until", "reads another tensor than the same site in a full forward", s)


def _replacement(run: _Run) -> None:
    ad = run.adapter
    assert run.logits is not None
    for s in run.sites:
        called: list[int] = []

        def identity(_s: Site, t: torch.Tensor, called: list[int] = called) -> torch.Tensor:
            called.append(1)
            return t

        same = ad.run_with_replacement(run.inputs, run.mask, s, identity)
        if not called:
            run.fail("replacement", "the writer was never called", s)
        elif not run.same(same, run.logits):
            run.fail("replacement", "the identity replacement changes the logits", s)
        changed = any(
            not torch.equal(ad.run_with_replacement(run.inputs, run.mask, s, w), run.logits)
            for w in (lambda _s, t: -t, lambda _s, t: torch.zeros_like(t))
        )
        if not changed:
            run.fail("replacement", "negating or zeroing the site leaves the logits unchanged: the write "
                                    "never reaches the output", s)


# --- capabilities ------------------------------------------------------------------------------
def _capabilities(run: _Run) -> None:
    ad, caps = run.adapter, run.adapter.capabilities
    tokens = ad.input_kind == "tokens"
    for flag in ("causal", "encoder", "gated_mlp", "prefix_cache"):
        if getattr(caps, flag) and not tokens:
            run.fail("capabilities", f"{flag} is declared for a {ad.input_kind} model (token models only)")
    if caps.causal and caps.encoder:
        run.fail("capabilities", "causal and encoder are both declared")
    if caps.prefix_cache and not caps.causal:
        run.fail("capabilities", "prefix_cache is declared for a model not declared causal")
    if caps.exact_walk and not ad.piecewise_linear:
        run.fail("capabilities", f"exact_walk is declared, but piecewise_linear is off ({ad.activation})")
    act = ad.activation
    if act != "?" and not act.startswith("mixed(") and ad.piecewise_linear != (act in PIECEWISE_LINEAR):
        run.fail("capabilities", f"piecewise_linear is {ad.piecewise_linear} for activation {act!r}")
    vocab = ad.vocab_size
    if vocab is not None and (not tokens or vocab < 1 or int(run.inputs.max()) >= vocab):
        run.fail("capabilities", f"vocab_size {vocab} does not fit the {ad.input_kind} inputs")
    selector = ad.position_selector
    if caps.spatial_positions and (selector is None or ad.positions_per_input < 1):
        run.fail("capabilities", "spatial_positions is declared without a position_selector and "
                                 "positions_per_input >= 1")
    if not caps.spatial_positions and (selector is not None or ad.positions_per_input != 1):
        run.fail("capabilities", f"position_selector {selector!r} / positions_per_input "
                                 f"{ad.positions_per_input} without spatial_positions")
    b = run.inputs.shape[0]
    g = ad.positions_per_input
    for s, t in run.reads.items():
        got = ad.select(s, t) if caps.spatial_positions else t
        want = (b,) if g == 1 else (b, g)
        if caps.spatial_positions and tuple(got.shape[:-1]) != want:
            run.fail("capabilities", f"selected shape {tuple(got.shape)} is not {(*want, 'C')}", s)


def _output_head(run: _Run) -> None:
    ad, caps, logits = run.adapter, run.adapter.capabilities, run.logits
    assert logits is not None
    if logits.shape[0] != run.inputs.shape[0]:
        run.fail("output_head", f"logits {tuple(logits.shape)} do not have the batch's {run.inputs.shape[0]} rows")
    vocab = ad.vocab_size if ad.input_kind == "tokens" else None
    if caps.output_head and vocab and tuple(logits.shape) != (*run.inputs.shape[:2], vocab):
        run.fail("output_head", f"logits are {tuple(logits.shape)}, not [B, L, vocab_size={vocab}]")
    if not caps.output_head and vocab and logits.shape[-1] == vocab:
        run.fail("output_head", "output_head is off, but logits() are vocabulary-wide")
    head = ad.output_head()
    if head is None:
        return
    if not caps.output_head:
        run.fail("output_head", "output_head() returns a module, but capabilities.output_head is off")
    seen: list[tuple[int, ...]] = []
    handle = head.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    try:
        ad.logits(run.inputs, run.mask)
    finally:
        handle.remove()
    if len(seen) != 1 or seen[0][:2] != tuple(run.inputs.shape[:2]):
        run.fail("output_head", f"the output_head() module ran {len(seen)} time(s) on {seen}: once on the "
                                "final hidden states [B, L, d] expected")


def _causal(run: _Run) -> None:
    ad, caps = run.adapter, run.adapter.capabilities
    if ad.input_kind != "tokens" or run.inputs.shape[1] < 2 or not (caps.causal or caps.encoder):
        return
    alt = run.inputs.clone()
    vocab = ad.vocab_size or int(run.inputs.max()) + 1
    alt[:, -1] = (alt[:, -1] + 1) % max(vocab, 2)
    a, b = ad.logits(run.inputs)[:, :-1], ad.logits(alt)[:, :-1]
    if caps.causal and not run.same(a, b, approx=True):
        run.fail("causal", "causal is declared, but the last token changes earlier positions' logits")
    if caps.encoder and torch.equal(a, b):
        run.fail("causal", "encoder is declared, but the last token does not reach earlier positions")


def _longest_row(run: _Run) -> torch.Tensor:
    if run.mask is None:
        return run.inputs[0]
    row = int(run.mask.sum(1).argmax())
    return run.inputs[row][run.mask[row].bool()]


def _prefix_cache(run: _Run) -> None:
    ad = run.adapter
    ids = _longest_row(run)
    if not ad.capabilities.prefix_cache or ids.shape[0] < 2:
        return
    p = int(ids.shape[0]) - 1
    full_reads: dict[Site, torch.Tensor] = {}
    with ad.hooks(reads={s: (lambda s, t: full_reads.__setitem__(s, t[:, -1].clone())) for s in run.sites}):
        want = ad.logits(ids[None])[:, -1]
    prefix = ad.prefix_cache(ids[None, :p])
    step_reads: dict[Site, torch.Tensor] = {}
    token = ids[p:].reshape(1, 1).expand(2, 1)
    with ad.hooks(reads={s: (lambda s, t: step_reads.__setitem__(s, t.clone())) for s in run.sites}):
        got = ad.cached_logits(token, prefix)
    again = ad.cached_logits(token, prefix)
    if tuple(got.shape) != (2, want.shape[-1]) or not all(run.same(r[None], want, approx=True) for r in got):
        run.fail("prefix_cache", "one token after prefix_cache() does not give the full forward's last logits")
    if not run.same(again, got):
        run.fail("prefix_cache", "cached_logits changed the prefix cache it was given")
    for s in run.sites:
        t = step_reads.get(s)
        if t is None or tuple(t.shape[:2]) != (2, 1) or not all(
                run.same(r, full_reads[s][0], approx=True) for r in t[:, -1]):
            run.fail("prefix_cache", "with the prefix cached, the site does not read the full forward's "
                                     "last position in every row [b, 1, d]", s)


def _feature_maps(run: _Run) -> None:
    ad = run.adapter
    if not ad.capabilities.feature_maps:
        return
    if not any(t.dim() >= 4 for t in run.reads.values()):
        run.fail("feature_maps", "feature_maps is declared, but no site is a spatial map [B, C, H, W]")
    for s, t in run.reads.items():
        got = torch.as_tensor(ad.feature_maps(run.inputs, s))
        if not run.same(got, t.reshape(t.shape[0], -1).double().cpu(), approx=True):
            run.fail("feature_maps", "feature_maps() is not the site's whole tensor per input", s)


def _modules_after(run: _Run) -> None:
    ad = run.adapter
    assert run.logits is not None
    starts: list[tuple[Site | None, torch.Tensor]] = (
        [(None, ad.prepare(run.inputs))] if ad.input_kind == "vectors" else [])
    for site, h in [*starts, *run.reads.items()]:
        rest = ad.modules_after(site)
        if rest is None:
            continue
        name = "the input" if site is None else site.name
        if not run.same(rest(h), run.logits, approx=True):
            run.fail("modules_after", f"the modules after {name}, run on its tensor, do not give the logits")


def _input_embedding(run: _Run) -> None:
    ad = run.adapter
    site = ad.input_embedding_site() if ad.input_kind == "tokens" else None
    if site is None:
        return
    assert run.logits is not None
    table = ad.input_embedding_weight()
    ids = ad.prepare(run.inputs)
    if table.dim() != 2 or table.shape[0] <= int(ids.max()):
        run.fail("input_embedding", f"the weight table {tuple(table.shape)} has no row for every input token")
        return
    got: list[torch.Tensor] = []
    with ad.hooks(reads={site: lambda _s, t: got.append(t.clone())}):
        ad.logits(run.inputs, run.mask)
    if len(got) != 1 or not run.same(got[0], table[ids]):
        run.fail("input_embedding", "the input embedding site does not read input_embedding_weight()[ids]")
    if not run.same(ad.run_with_replacement(run.inputs, run.mask, site, lambda _s, t: t), run.logits):
        run.fail("input_embedding", "writing the input embedding site unchanged changes the logits")
