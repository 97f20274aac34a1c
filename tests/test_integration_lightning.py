"""cadence.integrations.lightning.PlanCallback, and cadence.torch.Scheduler returned by configure_optimizers.

Tiny models on in-memory data, CPU, a few steps each. The value used at a step is read
by an optimizer step post-hook (after the update, before anything writes the next value).
"""

from __future__ import annotations

import csv
import pickle
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as lp
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from cadence import Plan
from cadence.errors import CadenceError, PlanError, TrainingDiverged
from cadence.integrations.lightning import PlanCallback, count_samples, plan_callback_class
from cadence.torch import Scheduler

PACKAGES = {"lightning.pytorch": lp, "pytorch_lightning": pl}
FIELDS = ("lr", "weight_decay")


def data(n=16, spike_at=(), lengths=False):
    """n samples of a fixed regression task; samples in ``spike_at`` get huge targets."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * torch.randn(n, 1, generator=g)
    for i in spike_at:
        y[i] = 1e4
    tensors = [x, y]
    if lengths:
        tensors.append(torch.arange(n) % 5 + 1)  # tokens per sample, for a token counter
    return TensorDataset(*tensors)


def loader(dataset, batch_size=4):
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def module_class(pkg, *, optimizer="adamw", val=None, scheduler_plan=None):
    """A LightningModule of two linear layers (two param groups, the second at half the LR).

    ``val(global_step)``: the validation loss it logs (default: the real one).
    ``scheduler_plan()``: configure_optimizers also returns Scheduler(opt, scheduler_plan()).
    """

    class Net(pkg.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 1)
            self.used, self.losses, self.norms, self.sched = [], [], [], None

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

        def training_step(self, batch, batch_idx):
            loss = F.mse_loss(self(batch[0]), batch[1])
            self.losses.append(loss.item())
            return loss

        def on_before_optimizer_step(self, optimizer):  # runs after the callbacks' hook
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            self.norms.append(torch.nn.utils.get_total_norm(grads).item() if grads else None)

        def validation_step(self, batch, batch_idx):
            loss = F.mse_loss(self(batch[0]), batch[1])
            self.log("val_loss", loss if val is None else torch.tensor(val(self.trainer.global_step)))

        def configure_optimizers(self):
            groups = [{"params": self.a.parameters()}, {"params": self.b.parameters(), "lr": 0.05}]
            opt = (torch.optim.AdamW(groups, lr=0.1, weight_decay=0.01) if optimizer == "adamw"
                   else torch.optim.SGD(groups, lr=0.1))

            def record(o, args, kwargs):
                self.used.append({f: [float(g[f]) for g in o.param_groups] for f in FIELDS})
            opt.register_step_post_hook(record)
            if scheduler_plan is None:
                return opt
            self.sched = Scheduler(opt, scheduler_plan())
            return {"optimizer": opt, "lr_scheduler": {"scheduler": self.sched, "interval": "step"}}

    return Net


def trainer(pkg, tmp_path, *, max_steps, callbacks=(), logger=False, **kwargs):
    settings = dict(max_steps=max_steps, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                    accelerator="cpu", devices=1, default_root_dir=tmp_path, enable_checkpointing=False,
                    num_sanity_val_steps=0, limit_val_batches=0)
    settings.update(kwargs)
    return pkg.Trainer(callbacks=list(callbacks), **settings)


def reference(plan_args, steps, samples=None, signals=None):
    """The plan's values step by step, from a fresh plan driven by hand (the mechanism's own loop)."""
    plan = Plan(**plan_args)
    out = []
    for k in range(steps):
        out.append(plan.values())
        plan.advance(samples=None if samples is None else samples[k])
        if signals is not None and signals[k]:
            plan.observe(signals[k])
    return out


def checkpoint(pkg, tmp_path, every):
    return pkg.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=every, save_top_k=-1,
                                         filename="{step}", enable_version_counter=False)


WARMUP_COSINE = {"channels": {"lr": "cosine(peak=0.1, warmup=2, final=0.001)",
                              "weight_decay": "linear(peak=0.1, final=0.0)"}, "horizon": 8}


# -- the values used are the plan's, and so is what is logged ------------------------------------

@pytest.mark.parametrize("package", list(PACKAGES))
def test_each_step_uses_the_plans_values_and_logs_them(package, tmp_path):
    pkg = PACKAGES[package]
    callback = plan_callback_class(package)(Plan(**WARMUP_COSINE))
    assert isinstance(callback, pkg.Callback) and callback.package == package
    model = module_class(pkg)()
    t = trainer(pkg, tmp_path, max_steps=8, callbacks=[pkg.callbacks.LearningRateMonitor(log_weight_decay=True),
                                                        callback],
                logger=pkg.loggers.CSVLogger(tmp_path, name="log"), log_every_n_steps=1)
    t.fit(model, loader(data()))
    expected = reference(WARMUP_COSINE, 8)
    assert len(model.used) == 8
    for used, want in zip(model.used, expected):
        assert used["lr"] == [want["lr"], want["lr"] * 0.5]  # the second group keeps its ratio
        assert used["weight_decay"] == [want["weight_decay"]] * 2
    assert model.used[0]["lr"][0] < model.used[2]["lr"][0] > model.used[7]["lr"][0]  # warmup, then decay
    clock = callback.plan.clock
    assert (clock.step, clock.samples, clock.skipped) == (8, 32, 0)
    logged = {}
    for row in csv.DictReader(next(Path(tmp_path, "log").rglob("metrics.csv")).read_text().splitlines()):
        if row["lr-AdamW/pg1"]:
            logged[int(row["step"])] = (float(row["lr-AdamW/pg1"]), float(row["lr-AdamW/pg2"]),
                                        float(row["lr-AdamW/pg1-weight_decay"]))
    assert sorted(logged) == list(range(8))
    for k, used in enumerate(model.used):
        assert logged[k] == (used["lr"][0], used["lr"][1], used["weight_decay"][0])


def test_plan_callback_class_names_its_packages():
    assert PlanCallback is plan_callback_class("lightning.pytorch") is plan_callback_class("lightning")
    assert issubclass(plan_callback_class("pytorch_lightning"), pl.Callback)
    assert not issubclass(plan_callback_class("pytorch_lightning"), lp.Callback)
    with pytest.raises(CadenceError, match="package must be one of lightning.pytorch, pytorch_lightning"):
        plan_callback_class("keras")
    for package in PACKAGES:  # ddp_spawn pickles the callbacks: each comes back as its own package's class
        callback = plan_callback_class(package)(Plan(**WARMUP_COSINE))
        again = pickle.loads(pickle.dumps(callback))
        assert type(again) is type(callback) and again.plan.channels == callback.plan.channels
        assert again.state_key == "PlanCallback"  # one checkpoint key for both packages


def test_samples_are_the_leading_dimension_of_the_first_tensor_or_a_function_of_the_batch(tmp_path):
    assert count_samples((torch.zeros(5, 3), torch.zeros(5))) == 5
    assert count_samples({"meta": ["a"], "x": {"ids": torch.zeros(7, 2)}}) == 7
    assert count_samples(torch.tensor(1.0)) == 1
    with pytest.raises(CadenceError, match="cannot count the samples of a batch of type list .*samples="):
        count_samples(["no", "tensor"])
    callback = PlanCallback(Plan(**WARMUP_COSINE), samples=lambda batch: 2 * len(batch[0]))
    trainer(lp, tmp_path, max_steps=2, callbacks=[callback]).fit(module_class(lp)(), loader(data()))
    assert callback.plan.clock.samples == 16
    callback = PlanCallback(Plan(**WARMUP_COSINE), samples=lambda batch: -1)
    fit_refused(tmp_path, callback, CadenceError, r"samples\(batch\) must return a whole number >= 0; got -1")


def test_import_cadence_does_not_import_lightning():
    code = ("import sys, cadence, cadence.integrations; "
            "print([m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- resume ------------------------------------------------------------------------------------

PLATEAU_PLAN = {"channels": {"lr": "plateau(cosine(peak=0.05), monitor='val_loss', patience=1, factor=0.5)",
                             "weight_decay": "linear(peak=0.1, final=0.0)"}, "horizon": 12}


def flat_val(step):
    """A validation loss that improves for 3 steps, then stalls."""
    return max(1.0 - 0.1 * step, 0.7)


def plateau_run(tmp_path, max_steps, ckpt_path=None):
    callback = PlanCallback(Plan(**PLATEAU_PLAN))
    model = module_class(lp, val=flat_val)()
    # saved when validation ends, as ModelCheckpoint does by default in a run that validates: a checkpoint
    # saved at the end of a training batch is resumed by Lightning without the validation due after that batch
    saver = lp.callbacks.ModelCheckpoint(dirpath=tmp_path, save_on_train_epoch_end=False, save_top_k=-1,
                                         filename="{step}", enable_version_counter=False)
    t = trainer(lp, tmp_path, max_steps=max_steps, callbacks=[callback, saver], enable_checkpointing=True,
                limit_val_batches=1, val_check_interval=1)
    t.fit(model, loader(data()), loader(data()), ckpt_path=ckpt_path)
    return model, callback


def test_a_run_resumed_from_a_checkpoint_equals_an_uninterrupted_one(tmp_path):
    whole, whole_cb = plateau_run(tmp_path / "whole", 12)
    first, first_cb = plateau_run(tmp_path / "first", 4)
    assert first_cb.plan.states["lr"]["rule"]["bad"] == 1  # mid-way through a patience
    resumed, resumed_cb = plateau_run(tmp_path / "resumed", 12, ckpt_path=tmp_path / "first" / "step=4.ckpt")
    assert first.used + resumed.used == whole.used
    assert first.losses + resumed.losses == whole.losses
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed_cb.plan.state_dict() == whole_cb.plan.state_dict()
    assert whole_cb.plan.states["lr"]["rule"]["reductions"]  # the plateau acted, before and after the checkpoint


def test_plateau_on_val_loss_halves_the_lr_once_validation_stalls(tmp_path):
    spec = "plateau(cosine(peak=1e-3), monitor='val_loss', patience=1, factor=0.5)"
    callback = PlanCallback(Plan({"lr": spec}, horizon=10))
    model = module_class(lp, val=lambda step: 1.0)()  # never improves after the first validation
    t = trainer(lp, tmp_path, max_steps=10, callbacks=[callback], limit_val_batches=1, val_check_interval=1)
    t.fit(model, loader(data()), loader(data()))
    cosine = reference({"channels": {"lr": "cosine(peak=1e-3)"}, "horizon": 10}, 10)
    used = [u["lr"][0] for u in model.used]
    # validated after every step: best at the 1st, bad at the 2nd, > patience at the 3rd: halved for step 3 on
    assert [round(u / c["lr"], 12) for u, c in zip(used, cosine)] == [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125,
                                                                      0.0625]
    by_hand = reference({"channels": {"lr": spec}, "horizon": 10}, 10, signals=[{"val_loss": 1.0}] * 10)
    assert used == [v["lr"] for v in by_hand]


# -- accumulation and counting ------------------------------------------------------------------

def test_accumulated_batches_make_one_step_of_their_real_samples_and_tokens(tmp_path):
    # 10 samples in batches of 4, 4, 2; two batches per step: steps of 8 and 2 samples
    plan_args = {"channels": {"lr": "linear(peak=0.1, final=0.0)"}, "horizon": 20, "unit": "sample",
                 "guards": {"loss_spike": {"window": 64, "min_history": 60}}}  # never fires; records train_loss
    callback = PlanCallback(Plan(**plan_args), tokens=lambda batch: int(batch[2].sum()))
    model = module_class(lp, optimizer="sgd")()
    dataset = data(10, lengths=True)
    t = trainer(lp, tmp_path, max_steps=4, callbacks=[callback], accumulate_grad_batches=2)
    t.fit(model, loader(dataset))
    clock = callback.plan.clock
    assert t.global_step == 4 and len(model.losses) == 6
    assert (clock.step, clock.samples, clock.tokens) == (4, 20, 2 * int(dataset.tensors[2].sum()))
    expected = reference({k: v for k, v in plan_args.items() if k != "guards"}, 4, samples=[8, 2, 8, 2])
    assert [u["lr"][0] for u in model.used] == [v["lr"] for v in expected]
    # the training loss of a step is the mean of its batches' losses
    losses = model.losses
    means = [(losses[0] + losses[1]) / 2, losses[2], (losses[3] + losses[4]) / 2, losses[5]]
    assert callback.plan.guard_states["loss_spike"]["history"] == pytest.approx(means, rel=1e-6)


# -- guards ---------------------------------------------------------------------------------------

GUARDED = {"channels": {"lr": "cosine(peak=0.01)", "weight_decay": 0.1}, "horizon": 10,
           "guards": {"loss_spike": {"window": 8, "min_history": 3, "sigma": 10.0, "max_in_a_row": 2}}}


class Snapshots(lp.Callback):
    """The weights and AdamW's step count before each training batch."""

    def __init__(self):
        self.weights, self.steps = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.weights.append([p.detach().clone() for p in pl_module.parameters()])
        opt = trainer.optimizers[0]
        self.steps.append([float(opt.state[p]["step"]) if p in opt.state else 0 for p in pl_module.parameters()])


def test_a_step_the_guards_refuse_is_not_applied_and_does_not_move_the_clock(tmp_path):
    callback, snaps = PlanCallback(Plan(**GUARDED)), Snapshots()
    model = module_class(lp)()
    t = trainer(lp, tmp_path, max_steps=8, callbacks=[callback, snaps], gradient_clip_val=1.0)
    t.fit(model, loader(data(32, spike_at=range(20, 24))))  # batch 5 has a huge loss
    clock = callback.plan.clock
    assert (t.global_step, clock.step, clock.skipped) == (8, 7, 1)
    assert callback.plan.guard_states["loss_spike"]["skipped"] == 1
    for a, b in zip(snaps.weights[5], snaps.weights[6]):  # AdamW: no moment, no decay, no step count
        assert torch.equal(a, b)
    assert snaps.steps[6] == snaps.steps[5] == [5.0] * 4
    assert not torch.equal(snaps.weights[4][0], snaps.weights[5][0])  # an applied step moves the weights
    assert model.used[6] == model.used[5]  # the clock did not move: the next step uses the same values
    expected = reference({k: v for k, v in GUARDED.items() if k != "guards"}, 7)
    assert [u["lr"][0] for u in model.used[:5] + model.used[6:]] == [v["lr"] for v in expected]


def test_too_many_refused_steps_in_a_row_is_a_diverged_run(tmp_path):
    callback = PlanCallback(Plan(**GUARDED))
    model = module_class(lp)()
    t = trainer(lp, tmp_path, max_steps=10, callbacks=[callback])
    with pytest.raises(TrainingDiverged, match="3 steps in a row were skipped"):
        t.fit(model, loader(data(40, spike_at=range(16, 40))))
    assert (callback.plan.clock.step, callback.plan.clock.skipped) == (4, 2)


class Scales(lp.Callback):
    """The gradient scaler's scale after each batch."""

    def __init__(self, scaler):
        self.scaler, self.scales = scaler, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.scales.append(self.scaler.get_scale())


def test_a_step_the_gradient_scaler_skips_does_not_move_the_clock(tmp_path):
    # 16-bit mixed precision on CPU, through an explicit plugin; the huge loss of batch 3 overflows to inf
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    plugin = lp.plugins.precision.MixedPrecision("16-mixed", "cpu", scaler=scaler)
    callback, snaps, scales = PlanCallback(Plan(**WARMUP_COSINE)), Snapshots(), Scales(scaler)
    model = module_class(lp)()
    t = trainer(lp, tmp_path, max_steps=6, callbacks=[callback, snaps, scales], plugins=[plugin])
    t.fit(model, loader(data(24, spike_at=[12])))
    skipped = [k for k in range(6) if scales.scales[k] < (scales.scales[k - 1] if k else 2.0**8)]
    assert skipped == [3]
    assert (callback.plan.clock.step, callback.plan.clock.skipped) == (5, 1)
    assert all(torch.equal(a, b) for a, b in zip(snaps.weights[3], snaps.weights[4]))
    # the scaler called no optimizer step at step 3 (no post-hook); step 4 used step 3's values
    assert [u["lr"][0] for u in model.used] == [v["lr"] for v in reference(WARMUP_COSINE, 5)]


# -- configure_optimizers returns cadence.torch.Scheduler ---------------------------------------

@pytest.mark.parametrize("package", list(PACKAGES))
def test_a_scheduler_from_configure_optimizers_follows_the_plan_and_resumes(package, tmp_path):
    pkg = PACKAGES[package]
    net = module_class(pkg, scheduler_plan=lambda: Plan(**WARMUP_COSINE))

    def run(folder, max_steps, ckpt_path=None):
        model = net()
        t = trainer(pkg, tmp_path / folder, max_steps=max_steps, callbacks=[checkpoint(pkg, tmp_path / folder, 4)],
                    enable_checkpointing=True)
        t.fit(model, loader(data()), ckpt_path=ckpt_path)
        return model

    whole = run("whole", 8)
    assert [u["lr"][0] for u in whole.used] == [v["lr"] for v in reference(WARMUP_COSINE, 8)]
    assert [u["weight_decay"][1] for u in whole.used] == [v["weight_decay"] for v in reference(WARMUP_COSINE, 8)]
    first = run("first", 4)
    resumed = run("resumed", 8, ckpt_path=tmp_path / "first" / "step=4.ckpt")
    assert first.used + resumed.used == whole.used and first.losses + resumed.losses == whole.losses
    assert resumed.sched.plan.state_dict() == whole.sched.plan.state_dict()
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))


# -- what the callback refuses, before the first step ---------------------------------------------

def fit_refused(tmp_path, callback, error, match, *, scheduler_plan=None, ckpt_path=None):
    model = module_class(lp, scheduler_plan=scheduler_plan)()
    t = trainer(lp, tmp_path, max_steps=4, callbacks=[callback])
    with pytest.raises(error, match=match) as info:
        t.fit(model, loader(data()), ckpt_path=ckpt_path)
    assert model.used == [] and "\n" not in str(info.value)


def test_a_field_the_optimizer_lacks_is_refused(tmp_path):
    callback = PlanCallback(Plan({"lr": "cosine(peak=0.1)", "momentum": 0.9}, horizon=4))
    fit_refused(tmp_path, callback, CadenceError, r"param group 0 has no 'momentum' field to drive .*beta1")


def test_an_lr_scheduler_next_to_the_callback_is_refused(tmp_path):
    callback = PlanCallback(Plan(**WARMUP_COSINE))
    fit_refused(tmp_path, callback, CadenceError, "also returned an LR scheduler \\(Scheduler\\)",
                scheduler_plan=lambda: Plan(**WARMUP_COSINE))


def test_what_a_lightning_fit_cannot_give_the_plan_is_refused(tmp_path):
    with pytest.raises(PlanError, match="cannot drive a 'batch' channel"):
        PlanCallback(Plan({"lr": "cosine(peak=0.1)", "batch": 32}, horizon=10))
    with pytest.raises(PlanError, match="cannot honour a 'rollback' guard"):
        PlanCallback(Plan({"lr": 0.1}, guards={"loss_spike": {}, "rollback": {}}))
    with pytest.raises(PlanError, match="channel 'lr' reads 'noise_g2'"):
        PlanCallback(Plan({"lr": "plateau(cosine(peak=0.1), monitor='noise_g2')"}, horizon=10))
    fit_refused(tmp_path, PlanCallback(Plan({"lr": "plateau(cosine(peak=0.1), monitor='val_loss')"}, horizon=10)),
                PlanError, "reads 'val_loss' but this fit runs no validation")


def test_a_checkpoint_of_another_plan_or_of_none_is_refused(tmp_path):
    model = module_class(lp)()
    t = trainer(lp, tmp_path, max_steps=2, callbacks=[PlanCallback(Plan(**WARMUP_COSINE)),
                                                      checkpoint(lp, tmp_path, 2)], enable_checkpointing=True)
    t.fit(model, loader(data()))
    other = Plan({"lr": "cosine(peak=0.2)", "weight_decay": "linear(peak=0.1, final=0.0)"}, horizon=8)
    fit_refused(tmp_path / "a", PlanCallback(other), PlanError, "its 'lr' is 'cosine\\(peak=0.1",
                ckpt_path=tmp_path / "step=2.ckpt")
    assert other.clock.step == 0  # left as it was
    bare = trainer(lp, tmp_path / "bare", max_steps=2, callbacks=[checkpoint(lp, tmp_path / "bare", 2)],
                   enable_checkpointing=True)
    bare.fit(module_class(lp)(), loader(data()))
    fit_refused(tmp_path / "b", PlanCallback(Plan(**WARMUP_COSINE)), PlanError, "holds no PlanCallback state",
                ckpt_path=tmp_path / "bare" / "step=2.ckpt")


def test_a_second_fit_with_the_same_callback_starts_the_plan_again(tmp_path):
    """A new fit (no checkpoint) starts the plan where it was given, as the hf callback does; the second fit
    uses the same values as the first (found in review: it used to go on from the first fit's clock)."""
    import lightning.pytorch as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(4, 1)
            self.used = []

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def on_before_optimizer_step(self, optimizer):
            self.used.append(optimizer.param_groups[0]["lr"])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1.0)

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 4, generator=g),
                                                                      torch.randn(32, 1, generator=g)), batch_size=4)
    plan = Plan({"lr": "cosine(peak=1e-2)"}, horizon=8)
    callback = PlanCallback(plan)
    runs = []
    for _ in range(2):
        module = Tiny()
        L.Trainer(max_steps=8, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                  enable_checkpointing=False, default_root_dir=tmp_path, callbacks=[callback]).fit(module, data)
        runs.append(module.used)
    assert runs[0] == runs[1] == list(plan.preview()["lr"]) and plan.clock.step == 8


def test_a_mixer_reads_the_per_domain_losses_training_step_reports(tmp_path):
    """odm() in a Lightning fit: training_step reports train_loss/<domain> through the callback; the plan
    observes them at the step's end and the mixture moves."""
    from cadence.torch.data import domain_signals

    plan = Plan({"lr": 0.05, "mixture": "odm()"}, horizon=6, domains=("a", "b"))
    callback = PlanCallback(plan)
    Base = module_class(lp)
    seen = []

    class Net(Base):
        def training_step(self, batch, batch_idx):
            per = F.mse_loss(self(batch[0]), batch[1], reduction="none").mean(dim=1)
            callback.report(domain_signals(per.detach(), (batch[0][:, 0] > 0).long(), ("a", "b")))
            seen.append(plan.mixture())
            return per.mean()

    trainer(lp, tmp_path, max_steps=6, callbacks=[callback]).fit(Net(), loader(data(24)))
    assert plan.clock.step == 6 and seen[0] == {"a": 0.5, "b": 0.5} and seen[-1] != seen[0]
