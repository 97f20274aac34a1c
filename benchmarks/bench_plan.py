"""Speed goals of the Plan (issue 10), measured by a script, not by tests; figures go to docs/benchmarks.md.

1. Per-step cost of a Plan-backed ``cadence.torch.Scheduler.step()`` against torch's
   ``LambdaLR.step()`` in the same process: same warmup+cosine, same AdamW with two param
   groups, checked to give the same LR before timing; interleaved repeats, median. Also a
   Scheduler over a ``plateau(...)`` controller (step only, and observe + step), one that
   drives two fields (lr + weight_decay), and the raw ``Plan.values()`` + ``Plan.advance()``.
   Goal: the plain Scheduler below 1.0x LambdaLR.
2. Cost of the gradient-noise-scale estimate on tiny-lm throughput. The runner estimates
   it whenever a step runs 2+ micro-batches, so the benchmark builds the runner's Loop
   (``resolve`` + ``make_loop``, as ``runner._train_locked`` does) and times the same step with the estimate and
   without it: ``loop.noise = False`` and ``loop._micro_norm`` replaced by a no-op on the
   instance (src is not touched). Steps alternate on/off/off/on on one Loop, so drift
   and the other jobs on the machine hit both alike; the time spent inside
   ``_micro_norm`` is also measured directly against the whole step. Goal: under 3%.
3. ``Plan.preview()`` over about 10**6 optimizer steps, for plans of 1, 2 and 4 channels
   on a step clock and for a sample clock whose ``batch`` channel ramps (doubling and
   linear). Best of 5. Goal: under 50 ms per channel.

Every section prints the load average (os.getloadavg) beside its figures: on a shared
machine they are only as good as its quietest moments.

Usage: python benchmarks/bench_plan.py [--quick] [--sections 123]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import time
import warnings

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from _timing import best_of
from cadence.plan import Plan
from cadence.time import Rates
from cadence.torch import Scheduler

PEAK, WARMUP = 3e-4, 2000
COSINE = f"cosine(peak={PEAK}, final=0.0, warmup={WARMUP})"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def spread(times: list[float]) -> str:
    """(max - min) / median of the repeats, in percent: how noisy a row is."""
    med = statistics.median(times)
    return f"±{50 * (max(times) - min(times)) / med:.0f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats (a minute or two)")
    ap.add_argument("--sections", default="123", help="which numbered sections to run")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}; {load()}")
    if "1" in args.sections:
        step_overhead(args.quick)
    if "2" in args.sections:
        noise_overhead(args.quick)
    if "3" in args.sections:
        previews(args.quick)
    print(f"\nend: {load()}")


# -- 1 ----------------------------------------------------------------------------------------

def optimizer():
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    return torch.optim.AdamW([{"params": [a], "lr": PEAK, "weight_decay": 0.1},
                              {"params": [b], "lr": PEAK / 2, "weight_decay": 0.0}], lr=PEAK)


def step_overhead(quick: bool) -> None:
    steps, repeats = (20_000, 5) if quick else (50_000, 15)
    total = steps + 1
    table = Plan({"lr": COSINE}, horizon=total).preview()["lr"] / PEAK

    def closure(i):
        if i < WARMUP:
            return i / WARMUP
        p = (i - WARMUP) / (total - WARMUP)
        return 0.5 * (1.0 + math.cos(math.pi * p))

    plateau = f"plateau({COSINE}, monitor='val_loss', patience=10, factor=0.5)"
    # a validation loss that falls, then stalls: plateau drops a few times over the run
    metric = [1.0 / (1.0 + min(i, steps // 3) / 1000) for i in range(total)]

    def run_plain(make):
        def run():
            sched = make(optimizer())
            step = sched.step
            for _ in range(steps):
                step()
        return run

    def run_observed():
        sched = Scheduler(optimizer(), plateau, total_steps=total)
        step, observe = sched.step, sched.observe
        for i in range(steps):
            observe({"val_loss": metric[i]})
            step()

    def run_torch_plateau():
        sched = ReduceLROnPlateau(optimizer(), patience=10, factor=0.5)
        step = sched.step
        for i in range(steps):
            step(metric[i])

    def run_plan():
        plan = Plan({"lr": COSINE}, horizon=total)
        values, advance = plan.values, plan.advance
        for _ in range(steps):
            values()
            advance()

    contenders = {
        "LambdaLR (math closure)": run_plain(lambda opt: LambdaLR(opt, closure)),
        "LambdaLR (array lookup)": run_plain(lambda opt: LambdaLR(opt, lambda i: float(table[i]))),
        "Scheduler(opt, spec, total_steps)": run_plain(lambda opt: Scheduler(opt, COSINE, total_steps=total)),
        "Scheduler(opt, Plan)": run_plain(lambda opt: Scheduler(opt, Plan({"lr": COSINE}, horizon=total))),
        "Scheduler, plateau(cosine), step()": run_plain(lambda opt: Scheduler(opt, plateau, total_steps=total)),
        "Scheduler, plateau, observe()+step()": run_observed,
        "ReduceLROnPlateau.step(val_loss)": run_torch_plateau,
        "Scheduler, lr + weight_decay": run_plain(lambda opt: Scheduler(
            opt, {"lr": COSINE, "weight_decay": "wsd(peak=0.1, warmup='1%', decay='20%')"}, total_steps=total)),
        "Plan.values() + Plan.advance()": run_plan,
    }

    # They drive the same values: check before timing.
    opts = [optimizer() for _ in range(4)]
    scheds = [LambdaLR(opts[0], closure), LambdaLR(opts[1], lambda i: float(table[i])),
              Scheduler(opts[2], COSINE, total_steps=total), Scheduler(opts[3], plateau, total_steps=total)]
    for _ in range(3000):
        for s in scheds:
            s.step()
    lrs = [o.param_groups[1]["lr"] for o in opts]
    assert max(lrs) - min(lrs) < 1e-15, lrs

    results = {name: [] for name in contenders}
    loads = [os.getloadavg()[0]]
    names = list(contenders)
    for r in range(repeats):  # interleaved, the order reversed every other repeat: drift hits every contender alike
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            contenders[name]()
            results[name].append((time.perf_counter() - t0) / steps)
        loads.append(os.getloadavg()[0])
    closure_times = results["LambdaLR (math closure)"]
    base = statistics.median(closure_times)
    lookup = statistics.median(results["LambdaLR (array lookup)"])
    print(f"\n1. per-step cost, AdamW with 2 param groups, {steps} steps a repeat, {repeats} interleaved repeats "
          f"(1-min load {min(loads):.2f}-{max(loads):.2f}):")
    print(f"  {'':38s} {'median':>7s} {'best':>6s} {'spread':>7s} {'/ closure':>10s} {'paired':>7s} {'/ lookup':>9s}")
    paired = {}
    for name, times in results.items():
        med = statistics.median(times)
        paired[name] = statistics.median(t / c for t, c in zip(times, closure_times))
        print(f"  {name:38s} {med * 1e6:7.2f} {min(times) * 1e6:6.2f} {spread(times):>7s} {med / base:10.2f} "
              f"{paired[name]:7.2f} {med / lookup:9.2f}")
    print("  us per step (median and best of the repeats); spread: (max-min)/2 over the median; / closure, / lookup: "
          "ratio of medians to LambdaLR's;\n  paired: median over repeats of the ratio to the LambdaLR closure timed "
          "in the same repeat")
    name = "Scheduler(opt, spec, total_steps)"
    plain = statistics.median(results[name])
    best_ratio = min(results[name]) / min(closure_times)
    met = plain < min(base, lookup) and paired[name] < 1.0
    print(f"  goal: plain Scheduler below 1.0x LambdaLR: {plain / base:.2f}x the closure (paired {paired[name]:.2f}, "
          f"best-of {best_ratio:.2f}), {plain / lookup:.2f}x the lookup -> {'met' if met else 'NOT met'}")
    breakdown(total)


def breakdown(total: int) -> None:
    """Where a plain Scheduler.step() goes: its parts timed alone (private names: skipped if they moved)."""
    import timeit

    sched = Scheduler(optimizer(), COSINE, total_steps=total)
    plan = sched.plan
    try:
        schedule, values, clock = plan._effective["lr"], plan._values(), plan.clock
        parts = {
            "Scheduler.step()": sched.step,
            "  Plan.advance() (hot path)": plan.advance,
            "    Clock.advanced(0, 0)": lambda: clock.advanced(0, 0),
            "  Plan._values(), cache missed": lambda: (setattr(plan, "_cache", None), plan._values()),
            "    schedule._value_on(ctx, pos), memo hit": lambda: schedule._value_on(clock.context, 5),
            "  OptimizerFields.apply(values)": lambda: sched.fields.apply(values),
            "LambdaLR.step() (math closure)": LambdaLR(optimizer(), lambda i: 0.5).step,
        }
    except (AttributeError, KeyError) as e:
        print(f"  (no breakdown: {e})")
        return
    print("  its parts alone, best of 7 x 20,000 calls (each includes one Python call's overhead):")
    for name, fn in parts.items():
        best = min(timeit.repeat(fn, number=20_000, repeat=7)) / 20_000
        print(f"    {name:44s} {best * 1e6:6.2f} us")


# -- 2 ----------------------------------------------------------------------------------------

SPEC = "cosine(peak=2e-3, final=2e-4, warmup='5%')"


def build_loop(size: str, count: int, batch: int = 32):
    """The runner's Loop for tiny-lm, built as runner._train_locked builds it (resolve, then make_loop)."""
    from cadence.bench.runner import RunConfig, make_loop, resolve
    from cadence.bench.workloads import get_workload

    cfg = RunConfig(workload="tiny-lm", channels={"lr": SPEC}, horizon=100_000, size=size, batch_size=batch,
                    micro_batch=batch // count, eval_every=100_000)
    cfg, plan = resolve(cfg)
    loop = make_loop(cfg, get_workload(cfg.workload), plan)
    assert loop.noise, "the runner no longer estimates the noise scale with 2+ micro-batches"
    return loop


def timed_step(loop, estimate: bool, norm_time: list) -> tuple[float, float]:
    """One training step of the Loop; (seconds of the whole step, seconds of micro_batches + reduce_signals)."""
    if estimate:
        loop.noise = True
        real = type(loop)._micro_norm.__get__(loop)

        def micro_norm(previous, count, small):
            t = time.perf_counter()
            out = real(previous, count, small)
            norm_time[0] += time.perf_counter() - t
            return out
        loop._micro_norm = micro_norm
    else:
        loop.noise = False
        loop._micro_norm = lambda previous, count, small: previous  # the estimate made a no-op
    norm_time[0] = 0.0
    t0 = time.perf_counter()
    values = loop.apply_values()
    work = loop.micro_batches(values)
    signals = loop.reduce_signals(work)
    t1 = time.perf_counter()
    assert loop.guards(signals)
    loop.optimizer_step()
    loop.observe(signals)
    loop.advance_clock(work)
    t2 = time.perf_counter()
    assert estimate == ("noise_g2" in signals and signals["noise_g2"] is not None)
    return t2 - t0, t1 - t0


def noise_overhead(quick: bool) -> None:
    cases = [(size, count, threads) for threads in (1, 2) for size in ("xs", "small") for count in (2, 4)]
    warm, measured = (2, 10) if quick else (5, 30)
    if quick:
        cases = [c for c in cases if c[1] == 2]
    from cadence.bench.workloads import get_workload
    get_workload("tiny-lm").rates(32)  # read the corpus before any timing
    print(f"\n2. noise-scale estimate on tiny-lm throughput, batch 32 x 128 tokens, {measured} steps of each after "
          f"{warm} warm-up, alternating on/off/off/on on one Loop; medians:")
    print(f"  {'size':5s} {'micro':>5s} {'thr':>3s} {'with: samples/s':>15s} {'without':>8s} {'cost':>7s} "
          f"{'paired':>7s} {'_micro_norm':>11s} {'fwd+bwd':>7s} {'spread':>7s}  load")
    worst = {}
    old_threads = torch.get_num_threads()
    for size, count, threads in cases:
        torch.set_num_threads(threads)
        loop = build_loop(size, count)
        norm_time = [0.0]
        on, off, on_work, off_work, norm_share, paired = [], [], [], [], [], []
        order = (True, False, False, True)
        for i in range(warm + measured):
            pair = {}
            for estimate in order[(i % 2) * 2:(i % 2) * 2 + 2]:
                step_s, work_s = timed_step(loop, estimate, norm_time)
                pair[estimate] = step_s
                if i >= warm:
                    (on if estimate else off).append(step_s)
                    (on_work if estimate else off_work).append(work_s)
                    if estimate:
                        norm_share.append(norm_time[0] / step_s)
            if i >= warm:
                paired.append(pair[True] / pair[False] - 1)
        batch = 32
        with_sps, without_sps = batch / statistics.median(on), batch / statistics.median(off)
        cost = statistics.median(on) / statistics.median(off) - 1
        pair_cost = statistics.median(paired)
        share = statistics.median(norm_share)
        work_cost = statistics.median(on_work) / statistics.median(off_work) - 1
        worst[threads] = max(worst.get(threads, -math.inf), share)
        noisy = max(spread(on)[1:-1], spread(off)[1:-1], key=float)
        print(f"  {size:5s} {count:5d} {threads:3d} {with_sps:15.1f} {without_sps:8.1f} {cost * 100:6.1f}% "
              f"{pair_cost * 100:6.1f}% {share * 100:10.2f}% {work_cost * 100:6.1f}% {'±' + noisy + '%':>7s}  "
              f"{os.getloadavg()[0]:.2f}")
    torch.set_num_threads(old_threads)
    print("  cost: median step time with / without - 1; paired: median over adjacent on/off pairs; _micro_norm: "
          "median share of the step spent in it;\n  fwd+bwd: the same as cost over micro_batches + reduce_signals "
          "only; spread: (max-min)/2 over the median of the noisier variant")
    for threads, share in worst.items():
        print(f"  goal: under 3% of throughput; with {threads} thread(s) the estimate's share of a step is at most "
              f"{share * 100:.2f}% -> {'met' if share < 0.03 else 'NOT met'}")
    print("  (cost and paired are the end-to-end figures: read them against the spread)")
    if os.getloadavg()[0] > os.cpu_count():
        print(f"  note: the load average exceeds the {os.cpu_count()} CPUs: with threads > 1 every parallel region "
              "waits for a descheduled thread, so those rows measure the scheduler more than the estimate")


# -- 3 ----------------------------------------------------------------------------------------

CHANNEL_SPECS = {
    "cosine": "cosine(peak=3e-4, final=3e-5, warmup='1%')",
    "wsd": "wsd(peak=3e-4, warmup='1%', decay='20%', shape='1-sqrt')",
    "linear": "linear(peak=0.1, warmup='1%')",
    "constant": "constant(value=0.95)",
    "plateau": "plateau(cosine(peak=3e-4, warmup='1%'), monitor='val_loss', patience=5)",
}


def previews(quick: bool) -> None:
    n = 10**6
    repeats = 3 if quick else 5
    c = CHANNEL_SPECS
    step_plans = [{"lr": c[k]} for k in c] + [
        {"lr": c["cosine"], "weight_decay": c["constant"]},
        {"lr": c["plateau"], "weight_decay": c["linear"]},
        {"lr": c["cosine"], "weight_decay": c["wsd"], "beta2": c["linear"], "loss.z": c["constant"]},
        {"lr": c["plateau"], "weight_decay": c["cosine"], "beta1": c["linear"], "beta2": c["constant"]},
    ]
    rates = Rates(samples_per_step=32, tokens_per_sample=128)
    sample_plans = [{"lr": c["cosine"], "batch": f"ramp(32, 512, '30%', shape='{shape}')"}
                    for shape in ("doubling", "linear")]
    sample_plans.append({"lr": c["plateau"], "weight_decay": c["wsd"], "loss.z": c["constant"],
                         "batch": "ramp(32, 512, '30%', shape='linear')"})
    if quick:
        step_plans = step_plans[:1] + step_plans[4:5] + step_plans[-1:]
        sample_plans = sample_plans[:2]
    print(f"\n3. Plan.preview() over about {n:,} optimizer steps, best of {repeats}:")
    print(f"  {'ms':>7s} {'ms/channel':>10s} {'steps':>9s}  plan")
    worst = (0.0, None)
    rows = []
    for channels in step_plans:
        rows.append((Plan(channels, horizon=n), channels, "step clock"))
    for channels in sample_plans:
        probe_h = 10**8  # steps grow linearly with the horizon: size it to about 10**6 steps
        probe = Plan(channels, horizon=probe_h, unit="sample", rates=rates).preview()["step"].size
        horizon = int(probe_h * n / probe)
        rows.append((Plan(channels, horizon=horizon, unit="sample", rates=rates), channels,
                     f"sample clock, horizon {horizon:.3g} samples"))
    for plan, channels, clock in rows:
        count = plan.preview()["step"].size
        best = best_of(plan.preview, repeats)
        per = best / len(channels)
        if per > worst[0]:
            worst = (per, channels)
        names = ", ".join(f"{k}={_short(v)}" for k, v in channels.items())
        print(f"  {best * 1e3:7.1f} {per * 1e3:10.1f} {count:9,d}  {clock}: {names}   (load {os.getloadavg()[0]:.2f})")
    print(f"  goal: under 50 ms per channel; worst {worst[0] * 1e3:.1f} ms -> {'met' if worst[0] < 0.05 else 'NOT met'}")


def _short(spec: str) -> str:
    return spec if len(spec) < 50 else spec[:47] + "..."


if __name__ == "__main__":
    main()
