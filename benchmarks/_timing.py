"""Shared by the benchmark scripts."""

import time


def best_of(fn, repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
