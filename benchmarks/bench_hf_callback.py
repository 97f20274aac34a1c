"""What cadence.integrations.hf.PlanCallback costs per Trainer step, on tiny GPT-2 models on the CPU.

One Trainer per model; each repeat trains it ``--steps`` optimizer steps without the
callback, then with each plan's callback (the order rotates between repeats so drift hits
every variant alike). torch runs on one thread, so the step's work is the main thread's
CPU time (``time.thread_time``), which other processes on a busy machine do not inflate
as they do wall time. A timing callback, last in the Trainer's list, reads that clock at
each ``on_step_end``; the time per step is the mean over the steps after ``--warmup``,
which covers the whole step: forward, backward, optimizer, and every callback hook
PlanCallback runs (``on_pre_optimizer_step``, ``on_step_end``, ``on_log``, the forward
pre-hook). The table gives the median over repeats, and the overhead as the median of
the per-repeat ratios with/without. A second column times PlanCallback's own per-step
hooks called directly in a loop (no training), so the absolute cost is shown without the
noise of a training step.

    .venv/bin/python benchmarks/bench_hf_callback.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/bench_hf_callback.py --repeats 11 --steps 200
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from transformers import (GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback,  # noqa: E402
                          TrainingArguments)
from transformers.utils import logging as hf_logging  # noqa: E402

from cadence import Plan  # noqa: E402
from cadence.integrations.hf import PlanCallback  # noqa: E402

hf_logging.set_verbosity_error()
logging.getLogger("transformers").setLevel(logging.ERROR)

MODELS = {  # name: (layers, width, sequence length, batch)
    "gpt2 1x16, 4x16 tokens": (1, 16, 16, 4),
    "gpt2 2x64, 8x64 tokens": (2, 64, 64, 8),
}
PLANS = {
    "lr": lambda steps: Plan({"lr": "cosine(peak=1e-3, warmup=10)"}, horizon=steps),
    "lr+wd+plateau": lambda steps: Plan({"lr": "plateau(cosine(peak=1e-3, warmup=10), monitor='train_loss', "
                                              "patience=5, factor=0.5)",
                                        "weight_decay": "linear(peak=0.1, final=0.0)"}, horizon=steps),
    "lr+grad_spike": lambda steps: Plan({"lr": "cosine(peak=1e-3, warmup=10)"}, horizon=steps,
                                        guards={"grad_spike": {"window": 64, "min_history": 8}}),
}


class Data(torch.utils.data.Dataset):
    def __init__(self, n, length):
        self.ids = torch.randint(0, 64, (n, length), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class StepClock(TrainerCallback):
    """The thread CPU time of every on_step_end (last in the callback list: after every other callback's)."""

    def __init__(self):
        self.ends = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.thread_time())


def trainer_for(model_name, steps, out):
    layers, width, length, batch = MODELS[model_name]
    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_head=2, n_embd=width, vocab_size=64, n_positions=length,
                        bos_token_id=0, eos_token_id=0)
    args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, report_to=[],
                             save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True, seed=0,
                             max_grad_norm=0.0)  # a grad_spike guard needs unclipped gradients
    return Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=Data(steps * batch, length))


def seconds_per_step(trainer, clock, callback, warmup):
    trainer.callback_handler.callbacks = [c for c in trainer.callback_handler.callbacks
                                          if c is not clock and not isinstance(c, PlanCallback)]
    if callback is not None:
        trainer.add_callback(callback)
    trainer.add_callback(clock)  # last: its on_step_end sees the end of every other callback's
    trainer.train()
    ends = clock.ends[warmup:]
    return (ends[-1] - ends[0]) / (len(ends) - 1)


def hooks_per_step(plan_name, steps, out):
    """Seconds per step of PlanCallback's own per-step work, its hooks called directly (no training)."""
    trainer = trainer_for("gpt2 1x16, 4x16 tokens", steps, out)
    cb = PlanCallback(PLANS[plan_name](steps))
    trainer.add_callback(cb)
    trainer.args.max_steps = 1
    trainer.train()  # builds the Scheduler and the hook on a real Trainer
    cb.plan.load_state_dict(cb._initial)
    cb._active = True
    args, state, control = trainer.args, trainer.state, trainer.control
    opt, model = trainer.optimizer, trainer.model
    batch = {"input_ids": torch.zeros(4, 16, dtype=torch.long)}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    logs = {"loss": 3.0, "grad_norm": 1.0, "learning_rate": 1e-3}
    n = steps - 1
    t0 = time.thread_time()
    for _ in range(n):
        cb._count(model, (), batch)
        cb.on_pre_optimizer_step(args, state, control, optimizer=opt)
        cb.on_step_end(args, state, control, optimizer=opt)
        cb.on_log(args, state, control, logs=logs)
    return (time.thread_time() - t0) / n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings)")
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    print(f"torch {torch.__version__}, {opts.threads} thread(s), {opts.repeats} repeats of {opts.steps} steps "
          f"(first {opts.warmup} not timed); CPU time of the training thread, median over repeats")
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for model_name in MODELS:
            trainer, clock = trainer_for(model_name, opts.steps, out), StepClock()
            variants = [None, *PLANS]
            times = {v: [] for v in variants}
            for r in range(opts.repeats):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for v in order:
                    cb = None if v is None else PlanCallback(PLANS[v](opts.steps))
                    times[v].append(seconds_per_step(trainer, clock, cb, opts.warmup))
            base = statistics.median(times[None])
            for v in PLANS:
                ratio = statistics.median(w / b - 1 for w, b in zip(times[v], times[None]))
                rows.append((model_name, v, base, statistics.median(times[v]), ratio))
        own = {v: hooks_per_step(v, opts.steps, out) for v in PLANS}
    print()
    print(f"| {'model, batch':<24} | {'plan':<14} | {'step, no callback':>17} | {'step, callback':>14} "
          f"| {'overhead':>8} | {'callback hooks':>14} |")
    print(f"|{'-' * 26}|{'-' * 16}|{'-' * 19}|{'-' * 16}|{'-' * 10}|{'-' * 16}|")
    for model_name, v, base, withcb, ratio in rows:
        print(f"| {model_name:<24} | {v:<14} | {base * 1e3:>14.2f} ms | {withcb * 1e3:>11.2f} ms | {ratio * 100:>+7.2f}% "
              f"| {own[v] * 1e6:>11.1f} µs |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
