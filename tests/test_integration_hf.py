"""cadence.integrations.hf.PlanCallback and the cadence.torch.Scheduler route, on a real transformers Trainer.

Every run is a one-layer GPT-2 (16 wide, vocabulary 64, no dropout) on a few in-memory
sequences, on the CPU, for a handful of steps. The value a step used is recorded by an
optimizer step pre-hook, at the instant ``optimizer.step()`` reads the param groups.
"""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from cadence import Plan
from cadence.errors import CadenceError, PlanError, RunError, TrainingDiverged
from cadence.integrations.hf import STATE_FILE, PlanCallback
from cadence.torch import Scheduler

SEQ = 16


@pytest.fixture(autouse=True)
def one_thread():
    """Steps this small run fastest on one thread (and a busy machine slows them least)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Sequences(torch.utils.data.Dataset):
    """``n`` sequences of ``SEQ`` token ids: random ones (seeded by index), or one token repeated."""

    def __init__(self, n, token=None):
        self.n, self.token = n, token

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.token is not None:
            ids = torch.full((SEQ,), self.token, dtype=torch.long)
        else:
            ids = torch.randint(0, 64, (SEQ,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": ids, "labels": ids}


def model():
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)


def arguments(out, **kw):
    settings = dict(output_dir=str(out), max_steps=8, per_device_train_batch_size=4, report_to=[],
                    save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True, seed=0,
                    learning_rate=1e-3, max_grad_norm=1.0)
    settings.update(kw)
    return TrainingArguments(**settings)


class Recorder(TrainerCallback):
    """The (lr, weight_decay) of every param group at each optimizer.step(), the weights and the AdamW
    step counts after each step."""

    def __init__(self):
        self.used, self.weights, self.adam_steps, self.handle = [], [], [], None

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        inner = getattr(optimizer, "optimizer", optimizer)
        self.inner = inner
        self.handle = inner.register_step_pre_hook(
            lambda opt, a, k: self.used.append([(g["lr"], g["weight_decay"]) for g in opt.param_groups]))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights.append([p.detach().clone() for p in model.parameters()])
        first = next(iter(model.parameters()))
        self.adam_steps.append(float(self.inner.state[first]["step"]) if first in self.inner.state else 0.0)

    def on_train_end(self, args, state, control, **kwargs):
        self.handle.remove()


def train(out, plan=None, callbacks=(), data=None, resume=None, optimizers=(None, None), net=None, **kw):
    """Run a Trainer; returns (trainer, recorder)."""
    recorder = Recorder()
    cbs = [*callbacks, *([PlanCallback(plan)] if plan is not None else []), recorder]
    evaluation = kw.pop("_eval", None)
    trainer = Trainer(model=net or model(), args=arguments(out, **kw), train_dataset=data or Sequences(48),
                      eval_dataset=evaluation, callbacks=cbs, optimizers=optimizers)
    trainer.train(resume_from_checkpoint=resume)
    return trainer, recorder


def logged(trainer, key):
    """{global step: value} of a key the Trainer logged during training."""
    return {row["step"]: row[key] for row in trainer.state.log_history if key in row}


def one_line(error):
    text = str(error.value)
    assert "\n" not in text and text
    return text


# -- values --------------------------------------------------------------------------------------
def test_every_step_uses_the_plans_values_and_logs_the_lr_it_used(tmp_path):
    plan = Plan({"lr": "cosine(peak=1e-3, final=1e-5, warmup=3)", "weight_decay": "linear(peak=0.1, final=0.01)"},
                horizon=10)
    expected = Plan(dict(plan.channels), horizon=10).preview()
    trainer, rec = train(tmp_path, plan, max_steps=10)
    assert len(rec.used) == 10
    for k, groups in enumerate(rec.used):
        decayed, plain = groups  # the Trainer's groups: decayed weights, then biases and norms
        assert decayed[0] == plain[0] == expected["lr"][k]
        assert decayed[1] == expected["weight_decay"][k]
        assert plain[1] == 0.0  # TrainingArguments' weight_decay is 0: the plan's goes where the Trainer decays
    lrs = logged(trainer, "learning_rate")
    assert sorted(lrs) == list(range(1, 11))
    assert all(lrs[step] == rec.used[step - 1][0][0] for step in lrs)
    assert len(set(lrs.values())) > 5  # the schedule moved, and the log followed it
    assert (plan.clock.step, plan.clock.samples, plan.clock.tokens, plan.clock.skipped) == (10, 40, 40 * SEQ, 0)


def test_a_plan_without_lr_leaves_the_trainers_scheduler_driving_the_lr(tmp_path):
    plan = Plan({"weight_decay": "linear(peak=0.2, final=0.0)"}, horizon=4)
    trainer, rec = train(tmp_path, plan, max_steps=4, weight_decay=0.05, lr_scheduler_type="linear")
    assert [g[0][1] for g in rec.used] == list(Plan(dict(plan.channels), horizon=4).preview()["weight_decay"])
    assert [g[1][1] for g in rec.used] == [0.0] * 4  # the no-decay group keeps its ratio 0
    assert [g[0][0] for g in rec.used] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])  # the Trainer's linear decay
    assert list(logged(trainer, "learning_rate").values()) == [g[0][0] for g in rec.used]


def test_gradient_accumulation_counts_optimizer_steps_and_real_samples(tmp_path):
    # 20 sequences in micro-batches of 3: 7 per epoch, the last of 2 samples; 2 per optimizer step,
    # so each epoch's last step is one micro-batch of 2. A sample clock shows the real counts.
    plan = Plan({"lr": "linear(peak=1e-3, final=0.0)"}, horizon=40, unit="sample")
    trainer, rec = train(tmp_path, plan, data=Sequences(20), max_steps=6, per_device_train_batch_size=3,
                         gradient_accumulation_steps=2)
    per_step = [6, 6, 6, 2, 6, 6]
    assert plan.clock.step == 6 and plan.clock.samples == sum(per_step) and plan.clock.tokens == sum(per_step) * SEQ
    by_hand = Plan(dict(plan.channels), horizon=40, unit="sample")
    for k, samples in enumerate(per_step):
        assert rec.used[k][0][0] == by_hand.values()["lr"]
        by_hand.advance(samples=samples, tokens=samples * SEQ)
    assert rec.used[4][0][0] == pytest.approx(1e-3 * (1 - 20 / 40))  # after 6+6+6+2 samples, not 4 * 6
    assert trainer.state.global_step == 6


DATA_PARALLEL = """
import json, os, sys, torch
sys.path.insert(0, sys.argv[1])
from test_integration_hf import Plan, PlanCallback, Recorder, Sequences, Trainer, arguments, model
torch.set_num_threads(1)
plan = Plan({"lr": "linear(peak=1e-3, final=0.0)"}, horizon=64, unit="sample")
rec = Recorder()
trainer = Trainer(model=model(), args=arguments(sys.argv[2], max_steps=3, ddp_backend="gloo"),
                  train_dataset=Sequences(24), callbacks=[PlanCallback(plan), rec])
trainer.train()
with open(os.path.join(sys.argv[2], "rank%s.json" % os.environ["RANK"]), "w") as f:
    json.dump({"clock": plan.clock.counters(), "lr": [g[0][0] for g in rec.used]}, f)
torch.distributed.destroy_process_group()  # before exit: gloo's threads torn down at exit can abort a rank
"""


def test_data_parallel_processes_count_the_samples_of_all(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DATA_PARALLEL)
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), here, str(tmp_path)], timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]  # what went wrong in the processes, if anything did
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["clock"] == {"step": 3, "samples": 3 * 2 * 4, "tokens": 3 * 2 * 4 * SEQ, "skipped": 0}
    assert ranks[0]["lr"] == pytest.approx([1e-3, 1e-3 * (1 - 8 / 64), 1e-3 * (1 - 16 / 64)], rel=1e-12)


# -- controllers -----------------------------------------------------------------------------------
def test_plateau_on_eval_loss_halves_the_lr_once_evaluations_stop_improving(tmp_path):
    # Trained on sequences of token 1, evaluated on sequences of token 2: learning one makes the
    # other less likely, so no evaluation after the first improves on it, and with patience 1
    # every second bad evaluation halves the LR (at steps 6 and 10; the one at 12 is the first after).
    spec = "plateau(cosine(peak=1e-2), monitor='val_loss', patience=1, factor=0.5)"
    plan = Plan({"lr": spec}, horizon=12)
    trainer, rec = train(tmp_path, plan, data=Sequences(48, token=1), _eval=Sequences(8, token=2), max_steps=12,
                         eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=8)
    evals = logged(trainer, "eval_loss")
    assert sorted(evals) == [2, 4, 6, 8, 10, 12]
    losses = [evals[s] for s in sorted(evals)]
    assert min(losses[1:]) > losses[0]  # the first evaluation stays the best
    assert plan.states["lr"]["rule"]["reductions"] == [6, 10]
    cosine = Plan({"lr": "cosine(peak=1e-2)"}, horizon=12).preview()["lr"]
    used = [g[0][0] for g in rec.used]
    assert used[:6] == list(cosine[:6])
    assert used[6:10] == pytest.approx(list(cosine[6:10] * 0.5), rel=1e-12)
    assert used[10:] == pytest.approx(list(cosine[10:] * 0.25), rel=1e-12)
    assert [lr for _, lr in sorted(logged(trainer, "learning_rate").items())] == used


def test_controllers_see_the_training_loss_the_trainer_logs(tmp_path):
    # mode='max' on a loss that falls at every step (one sequence repeated): every log after the
    # first is a bad one, so with patience 0 each of them halves the LR. Logged every 2 steps.
    plan = Plan({"lr": "plateau(cosine(peak=1e-3), monitor='train_loss', mode='max', patience=0, factor=0.5)"},
                horizon=16)
    trainer, rec = train(tmp_path, plan, data=Sequences(48, token=1), max_steps=8, logging_steps=2)
    losses = [loss for _, loss in sorted(logged(trainer, "loss").items())]
    assert len(losses) == 4 and all(b < a for a, b in zip(losses, losses[1:]))
    rule = plan.states["lr"]["rule"]
    assert rule["observations"] == 4 and rule["reductions"] == [4, 6, 8]
    cosine = Plan({"lr": "cosine(peak=1e-3)"}, horizon=16).preview(stop=8)["lr"]
    scale = [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]
    assert [g[0][0] for g in rec.used] == pytest.approx(list(cosine * scale), rel=1e-12)


# -- resume --------------------------------------------------------------------------------------
def test_a_second_train_without_resume_starts_the_plan_again(tmp_path):
    plan = Plan({"lr": "cosine(peak=1e-3, warmup=2)"}, horizon=4)
    callback, rec = PlanCallback(plan), Recorder()
    trainer = Trainer(model=model(), args=arguments(tmp_path, max_steps=4), train_dataset=Sequences(16),
                      callbacks=[callback, rec])
    trainer.train()
    first = list(rec.used)
    trainer.train()
    assert rec.used[4:] == first and len(first) == 4 and plan.clock.step == 4

def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    channels = {"lr": "plateau(cosine(peak=1e-3, warmup=2), monitor='val_loss', patience=0, factor=0.5)",
                "weight_decay": "linear(peak=0.1, final=0.0)"}
    common = dict(data=Sequences(48, token=1), max_steps=12, eval_strategy="steps", eval_steps=3,
                  per_device_eval_batch_size=8, save_strategy="steps", save_steps=6,
                  gradient_accumulation_steps=2)
    plan_a = Plan(channels, horizon=12)
    trainer_a, straight = train(tmp_path / "a", plan_a, _eval=Sequences(8, token=2), **common)
    saved = json.loads((tmp_path / "a" / "checkpoint-6" / STATE_FILE).read_text())
    assert saved["global_step"] == 6 and saved["plan"]["clock"]["step"] == 6
    assert not [f for f in os.listdir(tmp_path / "a" / "checkpoint-6") if f.startswith(".")]  # no temporary left

    shutil.copytree(tmp_path / "a" / "checkpoint-6", tmp_path / "b" / "checkpoint-6")
    plan_b = Plan(channels, horizon=12)
    trainer_b, resumed = train(tmp_path / "b", plan_b, resume=True, _eval=Sequences(8, token=2), **common)
    assert plan_a.states["lr"]["rule"]["reductions"]  # the controller acted, before and after the checkpoint
    assert resumed.used == straight.used[6:]
    assert plan_b.state_dict() == plan_a.state_dict()
    for key in ("loss", "learning_rate", "eval_loss"):  # the resumed history is the checkpoint's, then its own
        a, b = logged(trainer_a, key), logged(trainer_b, key)
        assert b == a and max(b) == 12
    for pa, pb in zip(trainer_a.model.parameters(), trainer_b.model.parameters()):
        assert torch.equal(pa, pb)


def test_a_resumed_run_keeps_each_groups_ratio_even_where_the_value_was_zero(tmp_path):
    # The user's groups run at 1 and 1/2 of the plan's lr; the checkpoint falls where the lr is 0, so
    # the restored groups (0, 0) no longer show the ratio: it comes from cadence_plan.json.
    channels = {"lr": "piecewise(points=[[0, 1e-3], [2, 0.0], [4, 1e-3]])"}

    def run(out, resume=None):
        net = model()
        params = list(net.parameters())
        opt = torch.optim.AdamW([{"params": params[:3], "lr": 1e-3}, {"params": params[3:], "lr": 5e-4}])
        return train(out, Plan(channels, horizon=4), optimizers=(opt, None), net=net, max_steps=4,
                     save_strategy="steps", save_steps=2, resume=resume)[1]

    straight = run(tmp_path / "a")
    assert [[lr for lr, _ in groups] for groups in straight.used] == [[1e-3, 5e-4], [5e-4, 2.5e-4], [0.0, 0.0],
                                                                       [5e-4, 2.5e-4]]
    resumed = run(tmp_path / "b", resume=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed.used == straight.used[2:]


def test_the_scheduler_route_uses_logs_and_resumes_the_plan(tmp_path):
    channels = {"lr": "wsd(peak=1e-3, warmup=2, decay='40%')", "weight_decay": "cosine(peak=0.05, final=0.01)"}
    expected = Plan(channels, horizon=10).preview()

    def run(out, resume=None):
        net = model()
        opt = torch.optim.AdamW([{"params": [p for n, p in net.named_parameters() if n.endswith("weight")]},
                                 {"params": [p for n, p in net.named_parameters() if not n.endswith("weight")]}],
                                lr=1.0, weight_decay=1.0)
        sched = Scheduler(opt, Plan(channels, horizon=10))
        return train(out, optimizers=(opt, sched), net=net, max_steps=10, save_strategy="steps", save_steps=5,
                     resume=resume), sched

    (trainer_a, straight), sched_a = run(tmp_path / "a")
    assert [g[0] for g in straight.used] == [(lr, wd) for lr, wd in zip(expected["lr"], expected["weight_decay"])]
    lrs = logged(trainer_a, "learning_rate")
    assert [lrs[s] for s in sorted(lrs)] == [g[0][0] for g in straight.used]

    (trainer_b, resumed), sched_b = run(tmp_path / "b", resume=str(tmp_path / "a" / "checkpoint-5"))
    assert resumed.used == straight.used[5:]
    assert sched_b.plan.clock.step == sched_a.plan.clock.step == 10
    for pa, pb in zip(trainer_a.model.parameters(), trainer_b.model.parameters()):
        assert torch.equal(pa, pb)


# -- guards --------------------------------------------------------------------------------------
class Spike(TrainerCallback):
    """Multiplies every gradient by ``factor`` before the optimizer steps numbered in ``at`` (0-based)."""

    def __init__(self, at, factor):
        self.at, self.factor = set(at), factor

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step in self.at:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(self.factor)


def test_a_grad_spike_guard_skips_the_update_and_holds_the_clock(tmp_path):
    plan = Plan({"lr": "linear(peak=1e-3, final=0.0)"}, horizon=10,
                guards={"grad_spike": {"window": 8, "min_history": 3, "sigma": 100}})
    trainer, rec = train(tmp_path, plan, callbacks=[Spike([5], 1e6)], max_steps=10, max_grad_norm=0.0,
                         weight_decay=0.1)
    assert (plan.clock.step, plan.clock.skipped) == (9, 1)
    assert plan.guard_states["grad_spike"]["skipped"] == 1
    before, skipped = rec.weights[4], rec.weights[5]
    assert all(torch.equal(a, b) for a, b in zip(before, skipped))  # no update: not even AdamW's weight decay
    assert not all(torch.equal(a, b) for a, b in zip(rec.weights[5], rec.weights[6]))
    assert rec.adam_steps[4] == rec.adam_steps[5] == 5.0 and rec.adam_steps[6] == 6.0  # moments untouched
    lr = [g[0][0] for g in rec.used]
    by_hand = Plan({"lr": "linear(peak=1e-3, final=0.0)"}, horizon=10).preview()["lr"]
    assert lr[:6] == list(by_hand[:6]) and lr[6:] == list(by_hand[5:9])  # the skipped step's values come again


def test_a_guard_that_keeps_skipping_stops_the_run_as_diverged(tmp_path):
    plan = Plan({"lr": "constant(value=1e-3)"}, horizon=10,
                guards={"grad_spike": {"window": 4, "min_history": 2, "max_in_a_row": 2}})
    with pytest.raises(TrainingDiverged) as e:
        train(tmp_path, plan, callbacks=[Spike(range(3, 10), math.nan)], max_steps=10, max_grad_norm=0.0)
    assert "in a row" in one_line(e)
    assert plan.clock.step == 3 and plan.clock.skipped == 2


# -- refusals, before the first step ----------------------------------------------------------------
def test_plans_the_trainer_cannot_follow_are_refused_when_the_callback_is_made():
    with pytest.raises(PlanError) as e:
        PlanCallback(Plan({"lr": "cosine(peak=1e-3)", "batch": 32}, horizon=10))
    assert "'batch'" in one_line(e)
    with pytest.raises(PlanError) as e:
        PlanCallback(Plan({"lr": 1e-3}, guards={"loss_spike": {}}))
    assert "train_loss" in one_line(e) and "grad_spike" in one_line(e)
    with pytest.raises(PlanError) as e:
        PlanCallback(Plan({"lr": 1e-3}, guards={"grad_spike": {}, "rollback": {}}))
    assert "rollback" in one_line(e)
    with pytest.raises(PlanError) as e:
        PlanCallback(Plan({"loss.z": 1e-4}))
    assert "optimizer channel" in one_line(e)
    with pytest.raises(PlanError):
        PlanCallback({"lr": 1e-3})


@pytest.mark.parametrize("channels, kw, error, words", [
    ({"lr": 1e-3, "momentum": "linear(peak=0.9, final=0.8)"}, {}, CadenceError, "'momentum'"),
    ({"lr": "plateau(cosine(peak=1e-3), monitor='val_loss')"}, {}, PlanError, "eval_strategy"),
    ({"lr": "plateau(cosine(peak=1e-3), monitor='noise_g2')"}, {}, PlanError, "does not give"),
    ({"lr": 1e-3}, {"_guards": {"grad_spike": {}}}, PlanError, "max_grad_norm"),
])
def test_settings_the_trainer_cannot_follow_are_refused_at_train_begin(tmp_path, channels, kw, error, words):
    plan = Plan(channels, horizon=10, guards=kw.pop("_guards", None))
    rec = Recorder()
    trainer = Trainer(model=model(), args=arguments(tmp_path, **kw), train_dataset=Sequences(8),
                      callbacks=[PlanCallback(plan), rec])
    with pytest.raises(error) as e:
        trainer.train()
    assert words in one_line(e) and one_line(e).startswith("PlanCallback")
    assert rec.used == [] and trainer.state.global_step == 0 and plan.clock.step == 0


def test_the_callback_needs_a_trainer_calling_it(tmp_path):
    from transformers import TrainerControl, TrainerState

    net = model()
    with pytest.raises(CadenceError) as e:
        PlanCallback(Plan({"lr": 1e-3})).on_train_begin(arguments(tmp_path), TrainerState(), TrainerControl(),
                                                        model=net, optimizer=torch.optim.AdamW(net.parameters()))
    assert "no transformers Trainer" in one_line(e)


def test_a_scheduler_given_to_the_trainer_is_not_replaced(tmp_path):
    net = model()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    mine = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    trainer = Trainer(model=net, args=arguments(tmp_path), train_dataset=Sequences(8), optimizers=(opt, mine),
                      callbacks=[PlanCallback(Plan({"lr": "cosine(peak=1e-3)"}, horizon=8))])
    with pytest.raises(CadenceError) as e:
        trainer.train()
    assert "LambdaLR" in one_line(e) and trainer.state.global_step == 0


def test_resuming_from_a_checkpoint_of_another_plan_or_none_is_refused(tmp_path):
    channels = {"lr": "cosine(peak=1e-3)"}
    train(tmp_path / "a", Plan(channels, horizon=4), max_steps=2, save_strategy="steps", save_steps=2)
    checkpoint = tmp_path / "a" / "checkpoint-2"
    assert (checkpoint / STATE_FILE).is_file()

    def resume(plan):
        rec = Recorder()
        trainer = Trainer(model=model(), args=arguments(tmp_path / "b", max_steps=4), train_dataset=Sequences(8),
                          callbacks=[PlanCallback(plan), rec])
        with pytest.raises(CadenceError) as e:
            trainer.train(resume_from_checkpoint=str(checkpoint))
        assert rec.used == []
        return e

    e = resume(Plan({"lr": "linear(peak=1e-3, final=0.0)"}, horizon=4))
    assert e.type is PlanError and "another plan" in one_line(e) and str(checkpoint) in one_line(e)
    e = resume(Plan(channels, horizon=8))
    assert e.type is PlanError and "horizon" in one_line(e)
    os.unlink(checkpoint / STATE_FILE)
    e = resume(Plan(channels, horizon=4))
    assert e.type is RunError and STATE_FILE in one_line(e)


# -- packaging -----------------------------------------------------------------------------------
def test_importing_cadence_does_not_import_transformers():
    code = ("import sys, cadence, cadence.integrations; "
            "assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_mixer_reads_the_per_domain_losses_compute_loss_reports(tmp_path):
    """odm() on two domains in the Trainer: a custom compute_loss reports train_loss/<domain> through the
    callback; the plan observes their step means before its clock moves, and the mixture moves."""
    from cadence.torch.data import domain_signals

    plan = Plan({"lr": 1e-3, "mixture": "odm()"}, horizon=8, domains=("easy", "hard"))
    callback = PlanCallback(plan)
    seen = []

    class Reporting(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            out = model(input_ids=inputs["input_ids"])
            logits = out.logits[:, :-1].reshape(-1, 64)
            per = torch.nn.functional.cross_entropy(logits, inputs["input_ids"][:, 1:].reshape(-1), reduction="none")
            per = per.view(inputs["input_ids"].shape[0], -1).mean(dim=1)
            domains = (inputs["input_ids"][:, 0] % 2).long()  # a made-up domain per sequence
            callback.report(domain_signals(per.detach(), domains, ("easy", "hard")))
            seen.append(plan.mixture())
            loss = per.mean()
            return (loss, out) if return_outputs else loss

    trainer = Reporting(model=model(), args=arguments(tmp_path, gradient_accumulation_steps=2),
                        train_dataset=Sequences(64), callbacks=[callback])
    trainer.train()
    assert plan.clock.step == 8 and len(seen) == 16
    assert seen[0] == {"easy": 0.5, "hard": 0.5} and seen[-1] != seen[0]  # the mixer saw the reported losses
    assert seen[0] == seen[1]  # one value per optimizer step: both micro-batches of a step see the same mixture
    with pytest.raises(PlanError, match="not a signal a training step reports"):
        callback.report({"val_loss": 1.0})
