"""What cadence.integrations.hf.PlanCallback costs per Trainer step, on tiny GPT-2 models on the CPU.

One Trainer per model; each repeat trains it ``--steps`` optimizer steps without the
callback, then with each plan's callback (the order rotates between repeats so drift hits
every variant alike). Every run starts from the same weights and a new optimizer, and the
run without the callback follows the Trainer's own cosine schedule at the plans' peak and
warmup, so each variant does the same arithmetic on the same kind of numbers.

Two measures:

* **inside the callback**: the CPU time spent in PlanCallback's per-step code during those
  real training runs (its forward pre-hook, ``on_pre_optimizer_step``, ``on_step_end``,
  ``on_log``), per step after ``--warmup``, median over repeats; the overhead is that time over the step
  time without the callback. This is what the callback adds, measured where it is spent.
  Not counted: the Trainer calling one more callback's empty hooks and the module call
  taking the path with hooks, about a microsecond each.
* **end to end**: the step time with the callback over the step time without it (best of
  the repeats each, as the other benchmarks here take). torch runs on one thread and the
  step time is the training thread's CPU time (``time.thread_time``) between consecutive
  ``on_step_end`` of a timing callback placed last, averaged over the steps after
  ``--warmup``; on a busy machine its noise (the spread of the runs without the callback
  is printed) is larger than the callback's cost, so this column bounds the overhead
  rather than measuring it.

    .venv/bin/python benchmarks/bench_hf_callback.py            # a few minutes on 2 cores
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
    """At every on_step_end (last in the callback list: after every other callback's), the thread
    CPU time and the time the timed callback (if any) has spent so far."""

    def __init__(self):
        self.ends, self.timed = [], None

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append((time.thread_time(), 0.0 if self.timed is None else self.timed.spent))


def trainer_for(model_name, steps, out):
    layers, width, length, batch = MODELS[model_name]
    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_head=2, n_embd=width, vocab_size=64, n_positions=length,
                        bos_token_id=0, eos_token_id=0)
    args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, report_to=[],
                             save_strategy="no", use_cpu=True, logging_steps=10, disable_tqdm=True, seed=0,
                             learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=10,
                             max_grad_norm=0.0)  # a grad_spike guard needs unclipped gradients
    trainer = Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=Data(steps * batch, length))
    trainer.initial_weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    return trainer


class TimedPlanCallback(PlanCallback):
    """PlanCallback that adds up the CPU time spent in its per-step code (``spent``, seconds)."""

    def __init__(self, plan):
        super().__init__(plan)
        self.spent = 0.0

    def _timed(name):
        inner = getattr(PlanCallback, name)

        def method(self, *args, **kwargs):
            t0 = time.thread_time()
            try:
                return inner(self, *args, **kwargs)
            finally:
                self.spent += time.thread_time() - t0
        method.__name__ = name
        return method

    _count = _timed("_count")
    on_pre_optimizer_step = _timed("on_pre_optimizer_step")
    on_step_end = _timed("on_step_end")
    on_log = _timed("on_log")
    on_evaluate = _timed("on_evaluate")
    del _timed


def run(trainer, clock, callback, warmup):
    """(CPU seconds per step after warmup, seconds per step spent inside the callback or None)."""
    trainer.model.load_state_dict(trainer.initial_weights)
    trainer.optimizer = None  # the Trainer makes a new one
    trainer.callback_handler.callbacks = [c for c in trainer.callback_handler.callbacks
                                          if c is not clock and not isinstance(c, PlanCallback)]
    if callback is not None:
        trainer.add_callback(callback)
    trainer.add_callback(clock)  # last: its on_step_end sees the end of every other callback's
    clock.timed = callback
    trainer.train()
    (t0, s0), (t1, s1) = clock.ends[warmup], clock.ends[-1]
    steps = len(clock.ends) - 1 - warmup
    return (t1 - t0) / steps, None if callback is None else (s1 - s0) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings)")
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    torch.set_flush_denormal(True)  # no variant slowed down by tiny numbers the others do not meet
    print(f"torch {torch.__version__}, {opts.threads} thread(s), {opts.repeats} repeats of {opts.steps} steps "
          f"(first {opts.warmup} not timed)")
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for model_name in MODELS:
            trainer, clock = trainer_for(model_name, opts.steps, out), StepClock()
            variants = [None, *PLANS]
            times = {v: [] for v in variants}
            inside = {v: [] for v in PLANS}
            for r in range(opts.repeats):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for v in order:
                    cb = None if v is None else TimedPlanCallback(PLANS[v](opts.steps))
                    step, spent = run(trainer, clock, cb, opts.warmup)
                    times[v].append(step)
                    if v is not None:
                        inside[v].append(spent)
            base = min(times[None])
            spread = max(times[None]) / base - 1
            for v in PLANS:
                own = statistics.median(inside[v])
                rows.append((model_name, v, base, spread, min(times[v]), own))
    print()
    print(f"| {'model, batch':<24} | {'plan':<14} | {'step, no callback':>17} | {'inside the callback':>19} "
          f"| {'overhead':>8} | {'step, callback':>14} | {'end to end':>10} |")
    print(f"|{'-' * 26}|{'-' * 16}|{'-' * 19}|{'-' * 21}|{'-' * 10}|{'-' * 16}|{'-' * 12}|")
    for model_name, v, base, spread, withcb, own in rows:
        print(f"| {model_name:<24} | {v:<14} | {base * 1e3:>6.2f} ms (±{spread * 100:>3.0f}%) | {own * 1e6:>16.1f} µs "
              f"| {own / base * 100:>7.2f}% | {withcb * 1e3:>11.2f} ms | {(withcb / base - 1) * 100:>+9.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
