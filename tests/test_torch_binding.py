import io

import numpy as np
import pytest
import torch

from cadence import schedules as S
from cadence.errors import CadenceError
from cadence.time import Rates
from cadence.torch import Scheduler

from conftest import ALL_SPECS, TOTAL


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def make_optimizer(model, kind="adamw"):
    head, tail = list(model[0].parameters()), list(model[2].parameters())
    groups = [{"params": head, "lr": 1e-2, "weight_decay": 0.1}, {"params": tail, "lr": 5e-3, "weight_decay": 0.0}]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=1e-2, momentum=0.9)
    return torch.optim.AdamW(groups, lr=1e-2)


def batch(i):
    g = torch.Generator().manual_seed(1000 + i)
    x = torch.randn(16, 4, generator=g)
    return x, x.sum(dim=1, keepdim=True).sin()


def train(model, opt, sched, start, stop, log):
    for i in range(start, stop):
        log.append([g["lr"] for g in opt.param_groups])
        x, y = batch(i)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_protocol_values_per_step_and_ratios():
    model = make_model()
    opt = make_optimizer(model)
    sched = Scheduler(opt, "cosine(peak=1e-2, final=1e-3, warmup=5)", total_steps=50)
    expected = S.cosine(peak=1e-2, final=1e-3, warmup=5).values(50)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    assert sched.get_last_lr() == [expected[0], expected[0] * 0.5]
    for k in range(1, 50):
        opt.step()
        sched.step()
        assert sched.last_epoch == k
        assert sched.get_last_lr() == [expected[k], expected[k] * 0.5]  # the half-LR group stays at half
        assert opt.param_groups[1]["lr"] == expected[k] * 0.5


def test_does_not_wrap_optimizer_step():
    model = make_model()
    opt = make_optimizer(model)
    step_before = opt.step
    Scheduler(opt, S.linear(peak=1e-2), total_steps=10)
    assert opt.step == step_before and not hasattr(opt.step, "_wrapped_by_lr_sched")


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_resume_is_bit_identical_for_every_schedule(spec):
    total, cut = TOTAL, 23
    model = make_model()
    opt = make_optimizer(model)
    sched = Scheduler(opt, spec, total_steps=total)
    straight = []
    train(model, opt, sched, 0, total, straight)

    model2 = make_model()
    opt2 = make_optimizer(model2)
    sched2 = Scheduler(opt2, spec, total_steps=total)
    resumed = []
    train(model2, opt2, sched2, 0, cut, resumed)
    buf = io.BytesIO()
    torch.save({"model": model2.state_dict(), "opt": opt2.state_dict(), "sched": sched2.state_dict()}, buf)
    del model2, opt2, sched2
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # the scheduler state is plain data
    model3 = make_model(seed=99)  # different init: everything must come from the checkpoint
    opt3 = make_optimizer(model3)
    sched3 = Scheduler(opt3, spec, total_steps=total)
    model3.load_state_dict(ckpt["model"])
    opt3.load_state_dict(ckpt["opt"])
    sched3.load_state_dict(ckpt["sched"])
    train(model3, opt3, sched3, cut, total, resumed)

    assert resumed == straight
    for a, b in zip(model.state_dict().values(), model3.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_order_does_not_matter():
    """Loading the optimizer before or after building the scheduler gives the same values."""
    spec = "wsd(peak=1e-2, warmup=3, decay=5)"
    opt = make_optimizer(make_model())
    sched = Scheduler(opt, spec, total_steps=20)
    for _ in range(12):
        sched.step()
    state_o, state_s = opt.state_dict(), sched.state_dict()
    opt_a = make_optimizer(make_model())
    opt_a.load_state_dict(state_o)
    sched_a = Scheduler(opt_a, spec, total_steps=20)  # built after the optimizer resumed mid-decay
    sched_a.load_state_dict(state_s)
    assert sched_a.get_last_lr() == sched.get_last_lr()
    assert sched_a.ratios == sched.ratios


def test_load_refuses_another_schedule_or_format():
    opt = make_optimizer(make_model())
    state = Scheduler(opt, "cosine(peak=1.0)", total_steps=10).state_dict()
    other = Scheduler(make_optimizer(make_model()), "linear(peak=1.0)", total_steps=10)
    with pytest.raises(CadenceError, match="checkpoint drives"):
        other.load_state_dict(state)
    with pytest.raises(CadenceError, match="expected a cadence.torch.Scheduler/1 state"):
        other.load_state_dict({"last_epoch": 3, "base_lrs": [0.1]})


def test_drives_several_fields():
    opt = make_optimizer(make_model(), kind="sgd")
    sched = Scheduler(opt, {"lr": "cosine(peak=0.1)", "weight_decay": "linear(peak=0.1, final=0.01)",
                            "momentum": "linear(peak=0.95, final=0.85)"}, total_steps=10)
    for _ in range(5):
        sched.step()
    wd = S.linear(peak=0.1, final=0.01).at(5, 10)
    assert [g["weight_decay"] for g in opt.param_groups] == [wd, 0.0]  # the no-decay group stays at 0
    assert opt.param_groups[0]["momentum"] == S.linear(peak=0.95, final=0.85).at(5, 10)
    assert sched.get_last_values()["momentum"] == [opt.param_groups[0]["momentum"]] * 2


def test_drives_adam_betas():
    opt = make_optimizer(make_model())
    Scheduler(opt, {"beta1": "constant(value=0.8)", "beta2": "constant(value=0.95)"}, total_steps=10)
    assert all(g["betas"] == (0.8, 0.95) for g in opt.param_groups)
    with pytest.raises(CadenceError, match="drive 'beta1'"):
        Scheduler(opt, {"momentum": "constant(value=0.9)"}, total_steps=10)


def test_tensor_lr_is_updated_in_place():
    p = torch.nn.Parameter(torch.zeros(2))
    lr = torch.tensor(0.1)
    opt = torch.optim.Adam([p], lr=lr)
    sched = Scheduler(opt, "linear(peak=0.1)", total_steps=10)
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.09)


def test_explicit_ratios_and_validation():
    opt = make_optimizer(make_model())
    sched = Scheduler(opt, "constant(value=1.0)", total_steps=5, ratios={"lr": [1.0, 0.25]})
    assert sched.get_last_lr() == [1.0, 0.25]
    with pytest.raises(CadenceError, match="one per param group"):
        Scheduler(opt, "constant(value=1.0)", total_steps=5, ratios={"lr": [1.0]})


def test_schedule_in_tokens():
    opt = make_optimizer(make_model())
    rates = Rates(samples_per_step=8, tokens_per_sample=128)
    sched = Scheduler(opt, "wsd(peak=1.0, warmup='8Ktok', decay='20%')", total_steps=100, rates=rates)
    sched.step(7)
    assert sched.get_last_lr()[0] == pytest.approx(7 / (8000 / 1024))
    with pytest.raises(CadenceError, match="tokens"):
        Scheduler(opt, "wsd(peak=1.0, warmup='8Ktok')", total_steps=100)


def test_bad_construction():
    with pytest.raises(CadenceError, match="torch.optim.Optimizer"):
        Scheduler("adam", "cosine(peak=1.0)", total_steps=10)
    opt = make_optimizer(make_model())
    with pytest.raises(CadenceError, match="warmup=20 steps leaves no steps"):
        Scheduler(opt, "cosine(peak=1.0, warmup=20)", total_steps=20)
    with pytest.raises(CadenceError, match="needs the run's total_steps"):
        Scheduler(opt, "cosine(peak=1.0)")
    with pytest.raises(CadenceError, match="step must be an int"):
        Scheduler(opt, "cosine(peak=1.0)", total_steps=10).step(-1)


class TestChangingTheTotal:
    def run(self, mode):
        opt = make_optimizer(make_model())
        spec = "wsd(peak=1.0, warmup=5, decay='20%')" if mode == "replan" else "cosine(peak=1.0, final=0.0)"
        sched = Scheduler(opt, spec, total_steps=100)
        used = [sched.get_last_lr()[0]]
        for k in range(1, 300):
            if k == 60:
                sched.set_total(200, mode=mode)
            if k == 101:  # the clock is at step 100 here
                sched.set_total(160 if mode == "replan" else 250, mode=mode)
            if k >= sched.total_steps:
                break
            sched.step()
            used.append(sched.get_last_lr()[0])
        return np.array(used), sched

    def test_values_already_used_never_change(self):
        used, sched = self.run("replan")
        ahead = S.wsd(peak=1.0, warmup=5, decay="20%")
        assert np.array_equal(used[:60], ahead.values(100)[:60])
        assert np.all(used[5:129] == 1.0)  # extending and shortening during the stable phase: no seam
        assert used[129] < 1.0 and len(used) == 160 and used[-1] < 0.05
        assert np.array_equal(used[100:], ahead.values(160)[100:])
        state = sched.state_dict()
        again = Scheduler(make_optimizer(make_model()), "wsd(peak=1.0, warmup=5, decay='20%')", total_steps=100)
        again.load_state_dict(state)
        assert again.total_steps == 160 and again.get_last_lr() == sched.get_last_lr()

    def test_stretch_is_continuous(self):
        used, _ = self.run("stretch")
        assert np.max(np.abs(np.diff(used))) < 0.04

    def test_new_total_must_be_ahead(self):
        sched = Scheduler(make_optimizer(make_model()), "cosine(peak=1.0)", total_steps=100)
        sched.step(50)
        with pytest.raises(CadenceError, match="larger than the current step"):
            sched.set_total(50)
        sched.set_total(70)
        with pytest.raises(CadenceError, match="cannot stretch"):
            sched.step(80)
            sched.set_total(200, mode="stretch")
        assert sched.total_steps == 70


# -- hardening (issue 9) ---------------------------------------------------------------------------
class Dips(S.Schedule):
    """A user-defined schedule that goes negative from step ``at`` on."""

    name = "dips"
    needs_total = False

    def __init__(self, at=5):
        super().__init__(at=at)
        self.at_step = at

    def _evaluate(self, t, ctx):
        return np.where(t < self.at_step, 0.1, -0.1)


def lrs(opt):
    return [g["lr"] for g in opt.param_groups]


def test_a_negative_learning_rate_is_refused_when_bound_naming_the_step():
    opt = make_optimizer(make_model())
    before = lrs(opt)
    with pytest.raises(CadenceError, match=r"gives -0.1 at step 5; a schedule's values must be >= 0"):
        Scheduler(opt, Dips(at=5), total_steps=10)
    with pytest.raises(CadenceError, match=">= 0"):  # far into a long run: found by bind's probes
        Scheduler(opt, Dips(at=5000), total_steps=10_000)
    with pytest.raises(CadenceError, match="ceiling must be >= 0"):
        Scheduler(opt, "clip(constant(value=1.0), ceiling=-1)", total_steps=10)
    assert lrs(opt) == before


def test_a_value_that_turns_bad_mid_run_refuses_the_step_and_changes_nothing():
    opt = make_optimizer(make_model())
    sched = Scheduler(opt, Dips(at=5000))  # open-ended: nothing to probe
    sched.step(4999)
    before, last = lrs(opt), sched.get_last_lr()
    with pytest.raises(CadenceError, match="lr: .*at step 5000"):
        sched.step()
    assert lrs(opt) == before and sched.get_last_lr() == last and sched.last_epoch == 4999


def test_values_past_the_end_never_refuse_a_step_inside_the_run():
    # 1.5**u overflows past step ~1750; the run ends at 1000, so every step of it works.
    opt = make_optimizer(make_model())
    sched = Scheduler(opt, "exponential(peak=1e-3, factor=1.5)", total_steps=1000)
    sched.step(999)
    assert sched.get_last_lr()[0] == S.exponential(peak=1e-3, factor=1.5).value_at(999, 1000)
    with pytest.raises(CadenceError, match="finite"):
        sched.step(3000)
    assert sched.last_epoch == 999
    with pytest.raises(CadenceError, match="finite"):
        Scheduler(make_optimizer(make_model()), "exponential(factor=8)", total_steps=1000)


@pytest.mark.parametrize("call, fragment", [
    (lambda s: s.step(-1), "step must be an int"),
    (lambda s: s.step(True), "step must be an int"),
    (lambda s: s.step(2.0), "step must be an int"),
    (lambda s: s.step(2**70), "2\\*\\*53"),
    (lambda s: setattr(s, "last_epoch", "x"), "step must be an int"),
    (lambda s: s.set_total(100, mode="bend"), "mode must be one of"),
    (lambda s: s.set_total(2**60), "2\\*\\*53"),
    (lambda s: s.set_total(1.5), "must be an int"),
    (lambda s: s.value("momentum", 3), "no schedule drives"),
])
def test_bad_calls_raise_cadence_errors_and_change_nothing(call, fragment):
    opt = make_optimizer(make_model())
    sched = Scheduler(opt, "cosine(peak=1e-2)", total_steps=50)
    sched.step(7)
    state, before = sched.state_dict(), lrs(opt)
    with pytest.raises(CadenceError, match=fragment):
        call(sched)
    assert sched.state_dict() == state and lrs(opt) == before


@pytest.mark.parametrize("edit", [
    lambda st: st.pop("step"),
    lambda st: st.update(step=-3),
    lambda st: st.update(step=2**70),
    lambda st: st.update(step="7"),
    lambda st: st.update(totals="x"),
    lambda st: st.update(totals=[[0, 50]]),
    lambda st: st.update(totals=[[0, 10**400, "replan"]]),
    lambda st: st.update(totals=[[0, 50, "replan"], [20, 10, "replan"]]),
    lambda st: st.update(totals=[[0, 50, "replan"]] * (10_001)),
    lambda st: st.update(ratios=[1.0, 1.0]),
    lambda st: st.update(ratios={"lr": [1.0]}),
    lambda st: st.update(ratios={"lr": [float("nan"), 1.0]}),
    lambda st: st.update(ratios={"momentum": [1.0, 1.0]}),
    lambda st: st.update(schedules="cosine(peak=1e-2)"),
    lambda st: st.update(format=None),
])
def test_a_malformed_state_is_refused_and_changes_nothing(edit):
    opt = make_optimizer(make_model())
    sched = Scheduler(opt, "cosine(peak=1e-2)", total_steps=50)
    sched.step(7)
    state, before = sched.state_dict(), lrs(opt)
    bad = sched.state_dict()
    edit(bad)
    with pytest.raises(CadenceError):
        sched.load_state_dict(bad)
    assert sched.state_dict() == state and lrs(opt) == before


@pytest.mark.parametrize("kwargs, fragment", [
    ({"schedule": {"params": "constant()"}}, "other than 'params'"),
    ({"schedule": {3: "constant()"}}, "field to drive"),
    ({"schedule": "constant()", "rates": {"samples_per_step": 4}}, "rates must be"),
    ({"schedule": "constant()", "ratios": [1.0, 0.5]}, "ratios must be a mapping"),
    ({"schedule": "constant()", "total_steps": 10.0}, "total_steps must be a positive int"),
    ({"schedule": "constant()", "total_steps": 2**60}, "2\\*\\*53"),
    ({"schedule": "cosine(peak=" + "9" * 400 + ")"}, "must be finite"),
])
def test_bad_construction_arguments_raise_cadence_errors(kwargs, fragment):
    kwargs.setdefault("total_steps", 10)
    with pytest.raises(CadenceError, match=fragment):
        Scheduler(make_optimizer(make_model()), **kwargs)
