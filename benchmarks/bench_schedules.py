"""Speed of the schedule library and the torch binding (not a test; figures go to docs/benchmarks.md).

1. Per-step overhead of ``cadence.torch.Scheduler.step()`` against
   ``torch.optim.lr_scheduler.LambdaLR.step()`` driving the same warmup+cosine schedule on
   the same optimizer (two param groups), in one process. LambdaLR is timed twice: with a
   ``math`` closure (what transformers' ``get_cosine_schedule_with_warmup`` does) and with a
   lookup into a precomputed array (the floor of LambdaLR's own machinery).
2. ``Schedule.values(10**6)`` for every family.
3. Nested combinators: ``values(100_000)`` at nesting depth 1 to 31 (the limit is 32). The
   time must grow linearly with depth; it used to double per level (depth 20: 17 s).
4. Long runs in bounded memory: ``summary()`` of a 2**26-step run (exact, streamed), the
   sampled summary of a 10**15-step run, and the peak memory numpy allocates for each
   (tracemalloc), against the 512 MiB a materialised 2**26-step run takes.

Usage: python benchmarks/bench_schedules.py [--steps 200000] [--repeats 7] [--sections 1234]
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import statistics
import time
import tracemalloc
import warnings

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from _timing import best_of
from cadence import schedules as S
from cadence.torch import Scheduler

PEAK, WARMUP = 3e-4, 2000


def optimizer():
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    return torch.optim.AdamW([{"params": [a], "lr": PEAK}, {"params": [b], "lr": PEAK / 2}], lr=PEAK)


def time_steps(make, steps: int) -> float:
    """Seconds per step() call, for a fresh scheduler stepped ``steps`` times."""
    sched = make(optimizer())
    step = sched.step
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sections", default="1234", help="which numbered sections to run")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}")
    if "1" in args.sections:
        step_overhead(args)
    if "2" in args.sections:
        values_per_family()
    if "3" in args.sections:
        nesting()
    if "4" in args.sections:
        long_runs()


def step_overhead(args) -> None:
    # LambdaLR warns that step() ran before optimizer.step(); there is no optimizer step here.
    warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
    total = args.steps + 1
    schedule = S.cosine(peak=PEAK, final=0.0, warmup=WARMUP)
    table = schedule.values(total) / PEAK

    def closure(i):
        if i < WARMUP:
            return i / WARMUP
        p = (i - WARMUP) / (total - WARMUP)
        return 0.5 * (1.0 + math.cos(math.pi * p))

    contenders = {
        "cadence.torch.Scheduler": lambda opt: Scheduler(opt, schedule, total_steps=total),
        "LambdaLR (math closure)": lambda opt: LambdaLR(opt, closure),
        "LambdaLR (array lookup)": lambda opt: LambdaLR(opt, lambda i: float(table[i])),
    }
    # Check they drive the same values before timing them.
    opts = {name: optimizer() for name in contenders}
    scheds = {name: make(opts[name]) for name, make in contenders.items()}
    for _ in range(3000):
        for s in scheds.values():
            s.step()
    lrs = {name: opts[name].param_groups[1]["lr"] for name in contenders}
    assert max(lrs.values()) - min(lrs.values()) < 1e-15, lrs

    results = {name: [] for name in contenders}
    for _ in range(args.repeats):  # interleave so drift hits every contender alike
        for name, make in contenders.items():
            results[name].append(time_steps(make, args.steps))
    print(f"per-step cost of step(), {args.steps} steps, median of {args.repeats}:")
    ours = statistics.median(results["cadence.torch.Scheduler"])
    for name, times in results.items():
        med = statistics.median(times)
        print(f"  {name:28s} {med * 1e6:7.2f} us/step   cadence / this = {ours / med:.2f}")



def values_per_family() -> None:
    print("\nSchedule.values(1_000_000), best of 5:")
    specs = [
        "cosine(peak=3e-4, final=3e-5, warmup='1%')",
        "linear(peak=3e-4, warmup='1%')",
        "wsd(peak=3e-4, warmup='1%', decay='20%', shape='1-sqrt')",
        "rex(peak=3e-4, warmup='1%')",
        "sgdr(peak=3e-4, period='5%', mult=2)",
        "onecycle(peak=3e-4)",
        "cyclic(low=1e-5, peak=3e-4, up='5%')",
        "multistep(peak=3e-4, milestones=['50%', '75%'])",
        "power(peak=0.02, a=4.6, b=-0.51, warmup='1%', decay='10%', per='st')",
        "infinite(peak=3e-4, constant=1e-4, warmup='1%', cooldown='10%', anneal='10%')",
        "rewarm(cosine(peak=3e-4), wsd(peak=2e-4, decay='20%'), at='50%', warmup='1%')",
    ]
    worst = 0.0
    for spec in specs:
        s = S.parse(spec)
        best = best_of(lambda: s.values(1_000_000), 5)
        worst = max(worst, best)
        print(f"  {best * 1e3:6.1f} ms  {spec}")
    print(f"slowest: {worst * 1e3:.1f} ms (goal: < 50 ms)")


def nesting() -> None:
    print("\nvalues(100_000) of nested combinators, best of 3 (goal: linear in depth):")
    wraps = {
        "warmup": "warmup({}, duration=10)",
        "decay_from": "decay_from({}, at='50%', final=0.1)",
        "rewarm": "rewarm({}, constant(value=0.5), at='50%', warmup=10)",
        "join": "join({}, constant(value=0.5), at=['50%'])",
    }
    for name, wrap in wraps.items():
        row = []
        for depth in (1, 8, 16, 31):
            spec = "cosine(peak=1.0)"
            for _ in range(depth):
                spec = wrap.format(spec)
            s = S.parse(spec)
            row.append(f"depth {depth:2d}: {best_of(lambda: s.values(100_000), 3) * 1e3:7.1f} ms")
        print(f"  {name:10s} " + "   ".join(row))


def long_runs() -> None:
    print("\nlong runs, one call each:")
    spec = "rewarm(cosine(peak=3e-4, warmup='1%'), wsd(peak=2e-4, decay='20%'), at='50%', warmup='1%')"
    s = S.parse(spec)
    for what, call in (("summary(2**26), exact", lambda: s.summary(2**26)),
                       ("summary(10**15), sampled", lambda: s.summary(10**15)),
                       ("chunks(2**26), every value", lambda: sum(v.size for _, v in s.chunks(2**26)))):
        tracemalloc.start()
        t0 = time.perf_counter()
        call()
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  {what:28s} {seconds:6.2f} s   peak numpy+python memory {peak / 2**20:6.1f} MiB")
    print(f"  (values(2**26) would hold {2**26 * 8 / 2**20:.0f} MiB; {spec})")


if __name__ == "__main__":
    main()
