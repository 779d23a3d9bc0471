"""Thread counts, in one place: for small work, and per pytest-xdist worker.

- `blas_threads(n)` / `torch_threads(n)`: context managers that set the BLAS/OpenMP (threadpoolctl)
  or torch thread count and restore it after. Many small eigendecompositions, k-means runs, tiny
  forward passes and zoo trainings gain nothing from parallelism and lose a lot to oversubscription
  on a busy machine (see benchmarks/README.md); one thread also makes floating-point reductions
  independent of the core count.
- `compute_threads(model)`: one torch and one BLAS thread while working on a small model.
- `share_cores()`: an xdist worker takes its share of the cores unless OMP_NUM_THREADS is set
  (`-n 2` on two cores would otherwise run four busy threads on two cores).

torch is imported only by the functions that set its threads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

SMALL_MODEL = 5_000_000  # parameters: below this, torch and BLAS run on one thread
SMALL_WIDTH = 2048  # units: below this, BLAS runs on one thread for spectra (a bootstrap is many small eighs)


@contextlib.contextmanager
def blas_threads(n: int = 1, enabled: bool = True) -> Iterator[None]:
    """BLAS and OpenMP limited to `n` threads for the duration (no change when not `enabled`)."""
    if not enabled:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(n):
        yield


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """torch limited to `n` threads for the duration; the previous setting is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def compute_threads(model: Any) -> Iterator[None]:
    """One torch thread and one BLAS thread while working on a small model (a torch module)."""
    if sum(p.numel() for p in model.parameters()) >= SMALL_MODEL:
        yield
        return
    with torch_threads(1), blas_threads(1):
        yield


def small_width(width: int) -> bool:
    """Whether spectra of this many units are small enough for one BLAS thread."""
    return width < SMALL_WIDTH


def worker_share() -> int | None:
    """Threads for this process when it is one of several pytest-xdist workers, else None."""
    if "PYTEST_XDIST_WORKER" not in os.environ or os.environ.get("OMP_NUM_THREADS"):
        return None
    try:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    except ValueError:
        return None
    if workers < 2:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def share_cores() -> int | None:
    """Limit torch and BLAS to this worker's share of the cores; the share, or None (unchanged)."""
    share = worker_share()
    if share is not None:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(share)
        threadpool_limits(share)  # process-wide from here on
    return share
