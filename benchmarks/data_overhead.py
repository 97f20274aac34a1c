"""What the data channels cost per optimizer step of a tiny-lm-sized model (issue 12: under 2%).

Times ``Loop.run_step`` (every step of the documented order, evaluation excluded) on the text
workload's default corpus, size ``xs`` or ``small``, batch 32, one torch thread, for these arms:

* ``tiny-lm``: the tiny-lm workload itself (one corpus, no domains): the reference step;
* ``uniform``: text, no data channel (the sampler still draws domains and counts them);
* ``mix``: a static mixture ``{code: 2, tests: 1, prose: 1}``;
* ``odm``: the ``odm()`` mixer (reads train_loss/<domain> every step);
* ``all``: ``odm()``, a ``sec()`` curriculum over difficulty buckets (files by length) and
  ``reweight()`` per-sample weights, all at once.

The arms are interleaved (a block of steps of each, in turn, ``--rounds`` times) so that a
slower stretch of a shared machine falls on all of them; the figure is the median step time
per arm and its ratio to ``uniform`` (the data channels' own cost) and to ``tiny-lm``.

Usage: .venv/bin/python benchmarks/data_overhead.py [--size xs] [--rounds 8] [--block 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cadence.bench.runner import RunConfig, make_loop, resolve
from cadence.bench.workloads import get_workload

ARMS = {
    "tiny-lm": dict(workload="tiny-lm", channels={"lr": "cosine(peak=2e-3, warmup=10)"}),
    "uniform": dict(workload="text", channels={"lr": "cosine(peak=2e-3, warmup=10)"}),
    "mix": dict(workload="text", channels={"lr": "cosine(peak=2e-3, warmup=10)",
                                           "mixture": {"code": 2, "tests": 1, "prose": 1}}),
    "odm": dict(workload="text", channels={"lr": "cosine(peak=2e-3, warmup=10)", "mixture": "odm()"}),
    "all": dict(workload="text", difficulty="length",
                channels={"lr": "cosine(peak=2e-3, warmup=10)", "mixture": "odm()", "curriculum": "sec()",
                          "sample_weights": "reweight(burn_in=5)"}),
}


def loops(size: str, horizon: int):
    out = {}
    for name, arm in ARMS.items():
        cfg, plan = resolve(RunConfig(size=size, horizon=horizon, batch_size=32, eval_every=10**9, **arm))
        out[name] = make_loop(cfg, get_workload(cfg.workload, cfg.data), plan)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="xs")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    horizon = args.rounds * args.block + 10
    arms = loops(args.size, horizon)
    for loop in arms.values():  # warm up: first steps allocate
        for _ in range(3):
            loop.run_step()
    times = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, loop in arms.items():
            for _ in range(args.block):
                t0 = time.perf_counter()
                loop.run_step()
                times[name].append(time.perf_counter() - t0)
    base, lm = statistics.median(times["uniform"]), statistics.median(times["tiny-lm"])
    print(f"size {args.size}, batch 32 x 128 bytes, 1 thread, {args.rounds} x {args.block} steps per arm, interleaved")
    print(f"{'arm':10} {'median ms':>10} {'vs uniform':>11} {'vs tiny-lm':>11}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:10} {1000 * m:10.2f} {100 * (m / base - 1):+10.2f}% {100 * (m / lm - 1):+10.2f}%")


if __name__ == "__main__":
    main()
