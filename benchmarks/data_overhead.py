"""What the data channels cost per optimizer step of a tiny-lm-sized model (issue 12: under 2%).

Times ``Loop.run_step`` (every step of the documented order, evaluation excluded) on the text
workload's default corpus, size ``xs`` or ``small``, batch 32, one torch thread, for these arms:

* ``tiny-lm``: the tiny-lm workload itself (one corpus, no domains): the reference step;
* ``uniform``: text, no data channel (the sampler still draws domains and counts them);
* ``mix``: a static mixture ``{code: 2, tests: 1, prose: 1}``;
* ``odm``: the ``odm()`` mixer (reads train_loss/<domain> every step);
* ``all``: ``odm()``, a ``sec()`` curriculum over difficulty buckets (files by length) and
  ``reweight()`` per-sample weights, all at once.

On a shared machine the step time moves by several percent from one block to the next, more
than the effect measured; so the data work is also timed by itself (``bookkeeping``): per
step, the plan's values, the mixture's weights, drawing the micro-batch's windows (under the
curriculum), the per-domain counts and loss sums (on stand-in per-sample losses), the
per-sample weights, the controllers' ``observe`` and the clock's ``advance``; each arm's
figure is that time as a share of the median tiny-lm step measured in the same run.

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


def bookkeeping(loop, steps: int) -> float:
    """Seconds per step of the data work of ``loop``'s plan and workload, without the model (see above)."""
    from cadence.plan import CURRICULUM, SAMPLE_WEIGHTS

    plan, w, cfg = loop.plan, loop.workload, loop.cfg
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for i in range(steps):
        values = plan.values()
        weights = loop.mixture()
        curriculum = None
        if loop.order is not None:
            curriculum = (loop.order, torch.tensor([values[f"{CURRICULUM}/{k}"] for k in loop.buckets],
                                                   dtype=torch.float64) if loop.buckets else values[CURRICULUM])
        data = w.batch(cfg.seed, i, 32, weights, curriculum) if loop.domains else w.batch(cfg.seed, i, 32)
        per = torch.rand(32, generator=g, dtype=torch.float64) + 2.0  # stand-in per-sample losses
        signals = {"train_loss": float(per.mean()), "grad_norm": 1.0}
        if loop.domains:
            sums = torch.bincount(data[2], weights=per, minlength=len(loop.domains))
            n = torch.bincount(data[2], minlength=len(loop.domains))
            counts = n.tolist()  # the runner counts the samples per domain from the same bincount
            signals.update({f"train_loss/{d}": (float(s / c) if c else None) for d, s, c in
                            zip(loop.domains, sums, n)})
            signals.update({f"samples/{d}": c for d, c in zip(loop.domains, counts)})
        if loop.buckets:
            sums = torch.bincount(data[3], weights=per, minlength=len(loop.buckets))
            n = torch.bincount(data[3], minlength=len(loop.buckets))
            signals.update({f"bucket_loss/{k}": (float(s / c) if c else None) for k, s, c in zip(loop.buckets, sums, n)})
        if loop.reweight is not None:
            loop.reweight.weights(per.numpy(), max(values[SAMPLE_WEIGHTS], 1.0))
        plan.observe(signals)
        plan.advance(samples=32, tokens=32 * 128)
    return (time.perf_counter() - start) / steps


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
    books = {name: [] for name in arms}
    spare = loops(args.size, 10 * horizon)  # fresh plans: the timed loops' clocks stay where they are
    for _ in range(args.rounds):
        for name, loop in spare.items():
            books[name].append(bookkeeping(loop, args.block))
    print(f"size {args.size}, batch 32 x 128 bytes, 1 thread, {args.rounds} x {args.block} steps per arm, interleaved")
    print(f"{'arm':10} {'median ms':>10} {'vs uniform':>11} {'vs tiny-lm':>11}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:10} {1000 * m:10.2f} {100 * (m / base - 1):+10.2f}% {100 * (m / lm - 1):+10.2f}%")
    print(f"\nbookkeeping alone (no model), per step, and its share of the median tiny-lm step ({1000 * lm:.1f} ms)")
    print(f"{'arm':10} {'median ms':>10} {'of a step':>10}")
    for name, bs in books.items():
        m = statistics.median(bs)
        print(f"{name:10} {1000 * m:10.3f} {100 * m / lm:9.2f}%")


if __name__ == "__main__":
    main()
