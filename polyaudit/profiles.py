"""Settings profiles: sample sizes and bootstrap counts for `--profile quick|default|paper`.

`paper` follows Black, Sharkey et al. 2022 (6 tokens per 1024-token sequence, skipping the first
100); `quick` is for CI smoke runs; `default` balances power against the cost of the forward passes.
Every profile resamples at least 2,000 times: the numbers that decide a verdict (percentile CIs at
the simultaneous levels of up to nine rows, bootstrap and permutation p-values) rest on at least
1,000 resamples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    name: str
    n_seq: int  # text probes: number of sequences
    seq_len: int  # text probes: tokens per sequence (capped by the model's context)
    k_per_seq: int  # text probes: kept (sampled) positions per sequence, evenly spaced
    skip: int  # text probes: first positions skipped (scaled when seq_len is capped)
    max_samples: int  # cap on kept samples per site (digits, categories, ...)
    n_boot: int  # bootstrap replicates
    n_perm: int  # permutation replicates
    batch_size: int  # sequences (or images) per forward batch
    alpha: float = 0.05  # significance level for verdicts (two-sided CIs at 1 - alpha)

    def with_overrides(self, **kw: int | float) -> Profile:
        return replace(self, **kw)  # type: ignore[arg-type]


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick", n_seq=24, seq_len=128, k_per_seq=24, skip=12, max_samples=1024,
        n_boot=2000, n_perm=2000, batch_size=8,
    ),
    "default": Profile(
        name="default", n_seq=64, seq_len=256, k_per_seq=48, skip=25, max_samples=4096,
        n_boot=2000, n_perm=2000, batch_size=8,
    ),
    "paper": Profile(
        name="paper", n_seq=512, seq_len=1024, k_per_seq=6, skip=100, max_samples=16384,
        n_boot=5000, n_perm=5000, batch_size=4,
    ),
}


def get_profile(name: str) -> Profile:
    from polyaudit.errors import PolyauditError

    try:
        return PROFILES[name]
    except KeyError:
        raise PolyauditError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}"
        ) from None
