"""Overhead of cadence.integrations.lightning.PlanCallback per training step of a tiny model.

One process, one tiny LightningModule (Linear 32->64, ReLU, Linear 64->1, AdamW with two
param groups, batches of 32 in memory, CPU), ``Trainer.fit`` for ``--steps`` optimizer
steps in each configuration:

* ``without``: the optimizer's fields never change (no callback);
* ``torch LambdaLR``: the same warmup+cosine from a torch scheduler in configure_optimizers
  (what a Lightning user writes without cadence);
* ``PlanCallback``: a plan of lr (warmup+cosine) and weight_decay (linear);
* ``PlanCallback, plan knows its batch``: the same plan given ``rates=Rates(samples_per_step=32)``,
  so a step of 32 samples is counted by ``plan.advance()``'s constant-batch path;
* ``PlanCallback, plateau + loss guard``: lr under ``plateau(..., monitor='train_loss')`` and a
  ``loss_spike`` guard, so the callback also reads the training loss of every step
  (``.item()``), observes it and runs the guard before each optimizer step.

A step is timed from the start of the step after ``--warmup`` steps to the end of the last
one (a timing callback; setup and teardown excluded), in process CPU time (torch on one
thread: what the process itself spent, much less sensitive than wall time to other jobs on
a shared machine) and in wall time. Configurations are interleaved, the order rotating each
repeat, and each row is the median over ``--repeats`` repeats; the overhead is against
``without``. A second table times the callback's own hooks directly (the thread's CPU time
around each hook call, less the cost of reading that clock, calibrated on an empty hook),
per step and as a share of a CPU step ``without``, and ``LambdaLR.step`` the same way: the
difference of two medians carries the machine's noise, the hooks' own time much less.
Prints the load average beside the figures.

Usage: python benchmarks/bench_lightning_callback.py [--steps 600] [--repeats 9] [--package lightning.pytorch]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import statistics
import time
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from cadence import Plan, Rates
from cadence.integrations.lightning import plan_callback_class

PEAK, WARMUP, FINAL, BATCH = 1e-3, 50, 1e-5, 32


def build(pkg, steps: int):
    class Tiny(pkg.LightningModule):
        def __init__(self, scheduler: bool = False, timer=None):
            super().__init__()
            self.timer, self.spent = timer, None
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(32, 64), nn.Linear(64, 1)
            self.scheduler = scheduler

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.mse_loss(self.b(torch.relu(self.a(x))), y)

        def configure_optimizers(self):
            opt = torch.optim.AdamW([{"params": self.a.parameters()}, {"params": self.b.parameters(), "lr": PEAK / 2}],
                                    lr=PEAK, weight_decay=0.01)
            if not self.scheduler:
                return opt

            def factor(step):
                if step < WARMUP:
                    return (step + 1) / (WARMUP + 1)
                t = (step - WARMUP) / max(steps - WARMUP, 1)
                return (FINAL + (PEAK - FINAL) * 0.5 * (1 + math.cos(math.pi * t))) / PEAK
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            self.spent = time_hooks(sched, self.timer, ("step",))  # the scheduler's own time, for comparison
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    class Timer(pkg.Callback):
        def __init__(self, warmup: int):
            self.warmup, self.start, self.end, self.timed = warmup, None, None, 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == self.warmup and self.start is None:
                self.start = (time.process_time(), time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.end = (time.process_time(), time.perf_counter())
            self.timed = trainer.global_step - self.warmup

    return Tiny, Timer


def cosine_plan(steps: int) -> dict:
    return {"lr": f"cosine(peak={PEAK}, final={FINAL}, warmup={WARMUP})",
            "weight_decay": "linear(peak=0.01, final=0.0)"}


def make_configs(package: str, steps: int):
    callback = plan_callback_class(package)

    def plain():
        return [], False

    def lambda_lr():
        return [], True

    def plan_callback():
        return [callback(Plan(cosine_plan(steps), horizon=steps))], False

    def plan_callback_rates():
        return [callback(Plan(cosine_plan(steps), horizon=steps, rates=Rates(samples_per_step=BATCH)))], False

    def plateau_guard():
        channels = {"lr": f"plateau(cosine(peak={PEAK}, final={FINAL}, warmup={WARMUP}), monitor='train_loss', "
                          "patience=5, factor=0.5)", "weight_decay": "linear(peak=0.01, final=0.0)"}
        guards = {"loss_spike": {"window": 64, "min_history": 16}}
        return [callback(Plan(channels, horizon=steps, guards=guards))], False

    return {"without": plain, "torch LambdaLR": lambda_lr, "PlanCallback": plan_callback,
            "PlanCallback, plan knows its batch": plan_callback_rates,
            "PlanCallback, plateau + loss guard": plateau_guard}


CLOCK_COST = 0.0
HOOKS = ("on_fit_start", "on_train_start", "on_train_batch_start", "on_before_backward", "on_before_optimizer_step",
         "on_train_batch_end", "on_validation_end")


def time_hooks(callback, timer, hooks=None) -> list:
    """Wrap the callback's hooks on the instance: [CPU ns spent in them after the warmup, timed calls]."""
    spent = [0, 0]
    clock = time.thread_time_ns

    def wrap(hook):
        def timed(*args):
            t0 = clock()
            out = hook(*args)
            if timer.start is not None:
                spent[0] += clock() - t0
                spent[1] += 1
            return out
        return timed
    for name in hooks or HOOKS:
        if hasattr(callback, name):
            setattr(callback, name, wrap(getattr(callback, name)))
    return spent


def clock_cost(calls: int = 200_000) -> float:
    """CPU ns that time_hooks adds to one call (its two clock reads), measured on a hook that does nothing."""
    class Nothing:
        def on_train_batch_start(self, *args):
            return None
    on = type("T", (), {"start": 0})()
    for _ in range(3):
        probe = Nothing()
        spent = time_hooks(probe, on)
        for _ in range(calls):
            probe.on_train_batch_start(None)
    bare = Nothing()
    t0 = time.thread_time_ns()
    for _ in range(calls):
        bare.on_train_batch_start(None)
    return max(spent[0] - (time.thread_time_ns() - t0), 0) / calls


def run_once(pkg, Tiny, Timer, loader, steps: int, warmup: int, config) -> tuple[float, float, float | None]:
    """(CPU seconds, wall seconds, CPU seconds in the PlanCallback's hooks or LambdaLR.step, or None) per timed step."""
    callbacks, scheduler = config()
    timer = Timer(warmup)
    spent = time_hooks(callbacks[0], timer) if callbacks else None
    cost = CLOCK_COST
    trainer = pkg.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                          enable_checkpointing=False, accelerator="cpu", devices=1, callbacks=[*callbacks, timer],
                          num_sanity_val_steps=0, limit_val_batches=0)
    module = Tiny(scheduler, timer)
    trainer.fit(module, loader)
    spent = spent or module.spent
    n = timer.timed
    return ((timer.end[0] - timer.start[0]) / n, (timer.end[1] - timer.start[1]) / n,
            None if spent is None else max(spent[0] - spent[1] * cost, 0) * 1e-9 / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--package", default="lightning.pytorch", choices=["lightning.pytorch", "pytorch_lightning"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("lightning", "pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    pkg = importlib.import_module(args.package)
    Tiny, Timer = build(pkg, args.steps)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(BATCH * 64, 32, generator=g), torch.randn(BATCH * 64, 1, generator=g))
    loader = DataLoader(data, batch_size=BATCH, shuffle=False)
    global CLOCK_COST
    CLOCK_COST = clock_cost()
    configs = make_configs(args.package, args.steps)
    names = list(configs)
    times: dict[str, list[tuple]] = {n: [] for n in names}
    for n in names:  # one untimed run each: imports, first calls
        run_once(pkg, Tiny, Timer, loader, args.warmup + 10, args.warmup, configs[n])
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            times[n].append(run_once(pkg, Tiny, Timer, loader, args.steps, args.warmup, configs[n]))
    one, five, fifteen = os.getloadavg()
    print(f"{args.package} {pkg.__version__}, torch {torch.__version__}, 1 thread, {args.steps} steps "
          f"({args.steps - args.warmup} timed), median of {args.repeats} interleaved repeats; "
          f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs")
    base = [statistics.median(t[i] for t in times["without"]) for i in (0, 1)]
    print(f"{'configuration':<38} {'CPU µs/step':>12} {'spread':>7} {'overhead':>9} {'wall µs/step':>13} "
          f"{'spread':>7} {'overhead':>9}")
    for n in names:
        row = f"{n:<38}"
        for i, (w1, w2) in enumerate(((12, 7), (13, 7))):
            values = [t[i] for t in times[n]]
            med = statistics.median(values)
            spread = 50 * (max(values) - min(values)) / med
            extra = "" if n == "without" else f"{100 * (med - base[i]) / base[i]:+.1f}%"
            row += f" {med * 1e6:>{w1}.1f} {'±%.0f%%' % spread:>{w2}} {extra:>9}"
        print(row)
    print()
    print(f"{'CPU time in the hooks / LambdaLR.step':<38} {'µs/step':>12} {'of a step without':>18}   "
          f"(clock reads: {CLOCK_COST:.0f} ns a call, subtracted)")
    for n in names:
        if times[n][0][2] is not None:
            med = statistics.median(t[2] for t in times[n])
            print(f"{n:<38} {med * 1e6:>12.1f} {100 * med / base[0]:>17.2f}%")


if __name__ == "__main__":
    main()
