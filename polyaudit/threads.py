"""Cores per process when pytest-xdist runs several workers on one machine.

Each worker would otherwise start torch and BLAS with a thread per core, and `-n 2` on two cores
runs four busy threads on two cores: the workers slow each other down (spinning BLAS threads
measured 3-10x slower on a loaded 2-core machine). A worker takes its share of the cores instead,
unless the user fixed the thread count with OMP_NUM_THREADS.
"""

from __future__ import annotations

import os


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
