"""Throughput of the cadence runner against a plain PyTorch loop on tiny-lm (not a test).

Both train the same model (same init, same batches, same optimizer, same schedule) in one
process, interleaved, so machine noise hits both alike. The plain loop is what a user
would write: forward, backward, clip, AdamW step, LambdaLR step, nothing logged. The
runner adds what it gives you: per-step metrics rows, gradient norm, checkpoints and
evaluation at the same cadence as the plain loop's evaluation.

Usage: python benchmarks/bench_runner.py [--steps 150] [--repeats 3] [--size small]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
import warnings

import torch
from torch.optim.lr_scheduler import LambdaLR

from cadence.bench.runner import RunConfig, train
from cadence.bench.workloads import get_workload
from cadence.schedules import parse

SPEC = "cosine(peak=2e-3, final=2e-4, warmup='5%')"


def plain_loop(size: str, steps: int, eval_every: int) -> float:
    """Seconds spent in a hand-written loop over the same work."""
    w = get_workload("tiny-lm")
    torch.manual_seed(0)
    model = w.model(size)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1.0, betas=(0.9, 0.95))
    values = parse(SPEC).values(steps)
    sched = LambdaLR(opt, lambda i: float(values[min(i, steps - 1)]))
    t0 = time.perf_counter()
    for step in range(steps):
        torch.manual_seed(step)
        model.train()
        loss = w.loss(model, w.batch(0, step, w.batch_size))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            model.eval()
            w.evaluate(model)
    return time.perf_counter() - t0


def runner(size: str, steps: int, eval_every: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        cfg = RunConfig(workload="tiny-lm", channels={"lr": SPEC}, horizon=steps, size=size, eval_every=eval_every,
                        checkpoint_every=100)
        manifest = train(cfg, f"{out}/run")
        return manifest["train_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", default="small")
    ap.add_argument("--eval-every", type=int, default=50)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    w = get_workload("tiny-lm")
    w.rates(32)  # load the corpus outside the timed region (the runner's workload object is separate)
    tokens = args.steps * w.batch_size * w.context
    plain, ours = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(args.size, args.steps, args.eval_every))
        ours.append(runner(args.size, args.steps, args.eval_every))
    p, r = statistics.median(plain), statistics.median(ours)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"tiny-lm size={args.size}, {args.steps} steps x {w.batch_size * w.context} tokens, eval every "
          f"{args.eval_every}; median of {args.repeats}")
    print(f"  plain loop: {tokens / p:9.0f} tokens/s  ({p:.2f} s)  runs: {', '.join(f'{x:.2f}' for x in plain)}")
    print(f"  cadence   : {tokens / r:9.0f} tokens/s  ({r:.2f} s)  runs: {', '.join(f'{x:.2f}' for x in ours)}")
    print(f"  runner cost: {100 * (r / p - 1):+.2f}% time ({'within' if r / p - 1 < 0.02 else 'over'} the 2% goal)")
    if not math.isfinite(r):
        raise SystemExit("runner failed")


if __name__ == "__main__":
    main()
