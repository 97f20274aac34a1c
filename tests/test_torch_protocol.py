"""cadence.torch.Scheduler against the rest of torch's LRScheduler protocol (issue 11, section 7).

The call-order warning, steps a GradScaler skipped, ChainedScheduler / SequentialLR /
ReduceLROnPlateau beside a cadence Scheduler, and ``initial_lr``.
"""

import copy
import gc
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as L

from cadence import schedules as S
from cadence.errors import CadenceError
from cadence.time import Rates
from cadence.torch import Scheduler, StepOrderWarning

SPEC = "cosine(peak=0.1, final=0.01)"
WARM = "cosine(peak=0.1, final=0.01, warmup=3)"  # its value at step 0 is 0
TOTAL = 20


def sgd(lr=0.1, groups=1, **kw):
    params = [{"params": [torch.nn.Parameter(torch.ones(3))], "lr": lr / (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params, lr=lr, **kw)


def expected(spec=SPEC, total=TOTAL):
    return [float(v) for v in S.parse(spec).values(total)]


def order_warnings(run):
    """The StepOrderWarnings that ``run()`` raises, every one of them (no registry dedup)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run()
    return [w for w in seen if issubclass(w.category, StepOrderWarning)]


class _Groups(torch.optim.Optimizer):
    """An optimizer that skips Optimizer.__init__: it runs no step hooks."""

    def __init__(self, lr):  # noqa: D107
        self.defaults = {"lr": lr}
        self.param_groups = [{"lr": lr}]
        self.state = {}

    def step(self, closure=None):
        pass


# -- 1. the call-order warning -------------------------------------------------------------------

def test_warns_once_when_step_runs_before_the_optimizers_first_step():
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)

    def misordered():
        for _ in range(5):  # torch < 1.1's order: the scheduler first
            sched.step()
            opt.step()

    seen = order_warnings(misordered)
    assert len(seen) == 1
    message = str(seen[0].message)
    assert "called 1 time(s) before the optimizer's first step()" in message
    assert "used the values of step 1, not 0" in message and "skip()" in message and "\n" not in message
    assert seen[0].filename == __file__  # it points at the loop's optimizer.step(), not into torch or cadence


@pytest.mark.parametrize("how", ["ordered", "no optimizer", "load_state_dict", "step(k)", "last_epoch", "skip",
                                 "fresh scheduler on a stepped optimizer", "no hooks"])
def test_no_warning_without_a_misordered_first_step(how):
    opt = _Groups(0.1) if how == "no hooks" else sgd()
    state = None
    if how == "load_state_dict":
        source = Scheduler(sgd(), SPEC, total_steps=TOTAL)
        for _ in range(7):
            source.step()
        state = source.state_dict()
    if how == "fresh scheduler on a stepped optimizer":
        for _ in range(3):
            opt.step()

    def run():
        sched = Scheduler(opt, SPEC, total_steps=TOTAL)
        if how == "no optimizer":  # stepping a scheduler alone (to plot it) is not a misordered loop
            for _ in range(TOTAL):
                sched.step()
            return
        if how == "load_state_dict":
            sched.load_state_dict(state)
        elif how == "step(k)":
            sched.step(7)
        elif how == "last_epoch":
            sched.last_epoch = 7
        elif how == "skip":
            sched.skip()  # the first step was refused: the optimizer did not step, the clock did not move
        for _ in range(4):
            opt.step()
            sched.step()

    assert order_warnings(run) == []


def test_a_resumed_fast_forward_by_step_calls_is_told_to_use_load_state_dict():
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)

    def run():
        for _ in range(6):
            sched.step()
        opt.step()

    (w,) = order_warnings(run)
    assert "called 6 time(s)" in str(w.message) and "load_state_dict() or sched.step(k)" in str(w.message)


def test_the_optimizer_step_is_not_wrapped_and_a_dropped_scheduler_leaves_no_hook():
    opt = sgd()
    step = opt.step
    hooks = len(opt._optimizer_step_post_hooks)
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    assert opt.step == step and not hasattr(opt.step, "_wrapped_by_lr_sched")
    assert len(opt._optimizer_step_post_hooks) == hooks + 1
    del sched
    gc.collect()
    assert len(opt._optimizer_step_post_hooks) == hooks


def test_a_deep_copy_watches_its_own_optimizer():
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    opt.step()
    sched.step()
    twin = copy.deepcopy(sched)
    assert twin.optimizer is not opt and twin.last_epoch == 1

    def run():
        for _ in range(3):
            twin.optimizer.step()
            assert twin.step_or_skip()

    assert order_warnings(run) == [] and twin.last_epoch == 4 and sched.last_epoch == 1


# -- 2. steps a GradScaler skipped ---------------------------------------------------------------

BAD = {2, 3, 7}  # attempts whose gradients are made infinite


def scaler_loop(opt, sched, report, attempts=12):
    """A mixed-precision loop on CPU. Returns (lr the optimizer had, whether it stepped) per attempt."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    params = [p for g in opt.param_groups for p in g["params"]]
    log = []
    for i in range(attempts):
        opt.zero_grad()
        loss = sum((p * p).sum() for p in params)
        if i in BAD:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        before = int(opt.state[params[0]].get("step", 0))
        lr = opt.param_groups[0]["lr"]
        if report == "scale":
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            sched.skip() if scaler.get_scale() < scale else sched.step()
        else:
            scaler.step(opt)
            scaler.update()
            sched.step_or_skip()
        log.append((lr, int(opt.state[params[0]]["step"]) > before))  # AdamW counts the steps it applied
    return log


@pytest.mark.parametrize("report", ["scale", "step_or_skip"])
@pytest.mark.parametrize("fused", [False, True])
def test_steps_a_grad_scaler_skipped_do_not_advance_the_clock(report, fused):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(4))], lr=0.1, fused=fused)
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepOrderWarning)
        log = scaler_loop(opt, sched, report)
    assert [moved for _, moved in log] == [i not in BAD for i in range(len(log))]
    applied = [lr for lr, moved in log if moved]
    assert applied == expected()[:len(applied)]  # every step the optimizer took had the next value of the schedule
    assert [lr for lr, moved in log if not moved] == [expected()[2], expected()[2], expected()[5]]  # retried values
    assert sched.plan.clock.step == len(log) - len(BAD) and sched.plan.clock.skipped == len(BAD)


def test_step_or_skip_counts_from_its_last_call_and_passes_the_batch_on():
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL, rates=Rates(samples_per_step=32))
    assert sched.step_or_skip() is False  # the optimizer has not stepped since the scheduler was built
    opt.step()
    opt.step()
    assert sched.step_or_skip(samples=24) is True  # two optimizer steps between calls still count once
    assert sched.step_or_skip() is False
    clock = sched.plan.clock
    assert (clock.step, clock.samples, clock.skipped) == (1, 24, 2)


def test_step_or_skip_needs_an_optimizer_that_runs_step_hooks():
    sched = Scheduler(_Groups(0.1), SPEC, total_steps=TOTAL)
    with pytest.raises(CadenceError, match="runs no step hooks.*call step\\(\\) or skip\\(\\)"):
        sched.step_or_skip()
    assert sched.last_epoch == 0


# -- 3. ChainedScheduler, SequentialLR, ReduceLROnPlateau ----------------------------------------

def test_chained_with_a_torch_lr_scheduler_is_refused_at_the_next_step():
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    chain = L.ChainedScheduler([sched, L.ExponentialLR(opt, gamma=0.5)])
    opt.step()
    chain.step()  # cadence set step 1's value, ExponentialLR then halved it
    assert opt.param_groups[0]["lr"] == expected()[1] * 0.5
    opt.step()
    with pytest.raises(CadenceError, match=r"lr is 0\.0497.*not the 0\.0994.*ChainedScheduler.*its only writer") as e:
        chain.step()
    assert "\n" not in str(e.value) and "--" not in str(e.value)
    assert sched.last_epoch == 1  # refused: the clock did not move


def test_chained_after_a_torch_lr_scheduler_is_refused_at_the_first_step():
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    chain = L.ChainedScheduler([L.ExponentialLR(opt, gamma=0.5), sched])
    opt.step()
    with pytest.raises(CadenceError, match="its only writer"):
        chain.step()  # ExponentialLR's change would otherwise be overwritten without a word
    assert sched.last_epoch == 0


def test_chained_schedulers_of_different_fields_compose():
    wd, momentum = "linear(peak=0.1, final=0.0)", "linear(peak=0.9, final=0.5)"

    def chained():
        opt = sgd(groups=2, weight_decay=0.1, momentum=0.9)
        return opt, L.ChainedScheduler([Scheduler(opt, SPEC, total_steps=TOTAL),
                                        Scheduler(opt, wd, total_steps=TOTAL, field="weight_decay"),
                                        Scheduler(opt, momentum, total_steps=TOTAL, field="momentum")])

    def fields(opt):
        return [(g["lr"], g["weight_decay"], g["momentum"]) for g in opt.param_groups]

    opt, chain = chained()
    for k in range(1, 8):
        opt.step()
        chain.step()
        assert fields(opt)[1] == (expected()[k] * 0.5, expected(wd)[k], expected(momentum)[k])
    again, chain2 = chained()
    chain2.load_state_dict(chain.state_dict())  # ChainedScheduler saves and loads each child's state
    assert fields(again) == fields(opt)


def test_a_cadence_weight_decay_beside_a_torch_lr_scheduler_composes():
    opt = sgd(weight_decay=0.1)
    alone = sgd(weight_decay=0.1)
    torch_alone = L.StepLR(alone, step_size=3, gamma=0.5)
    chain = L.ChainedScheduler([Scheduler(opt, "linear(peak=0.1, final=0.0)", total_steps=TOTAL, field="weight_decay"),
                                L.StepLR(opt, step_size=3, gamma=0.5)])
    for _ in range(10):
        opt.step()
        alone.step()
        chain.step()
        torch_alone.step()
        assert opt.param_groups[0]["lr"] == alone.param_groups[0]["lr"]
    assert opt.param_groups[0]["weight_decay"] == expected("linear(peak=0.1, final=0.0)")[10]


@pytest.mark.parametrize("first", [True, False])
def test_sequential_lr_is_refused_when_built(first):
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    other = L.ConstantLR(opt, factor=0.5, total_iters=3)
    children = [sched, other] if first else [other, sched]
    with pytest.raises(CadenceError, match="SequentialLR.*compose schedules in one spec instead \\(join"):
        L.SequentialLR(opt, children, milestones=[3])
    assert sched.last_epoch == 0


def test_reduce_lr_on_plateau_beside_it_is_refused_after_its_first_drop():
    opt = sgd()
    sched = Scheduler(opt, "constant(value=0.1)", total_steps=TOTAL)
    plateau = L.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    opt.step()
    sched.step()
    plateau.step(1.0)
    plateau.step(1.0)  # no improvement: it halves the lr, which the next step() would overwrite
    assert opt.param_groups[0]["lr"] == 0.05
    with pytest.raises(CadenceError, match="ReduceLROnPlateau"):
        sched.step()


def test_the_loop_changing_the_lr_is_refused_but_seeking_or_loading_is_not():
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    sched.step()
    opt.param_groups[0]["lr"] = 1.0
    with pytest.raises(CadenceError, match="lr is 1.0, not the"):
        sched.step()
    with pytest.raises(CadenceError, match="its only writer"):
        sched.advance()
    sched.step(5)  # setting the clock writes that step's values again
    assert opt.param_groups[0]["lr"] == expected()[5]
    state = sched.state_dict()
    opt.param_groups[0]["lr"] = 1.0
    sched.load_state_dict(state)
    sched.step()
    assert opt.param_groups[0]["lr"] == expected()[6]


def test_an_optimizer_checkpoint_loaded_after_the_scheduler_needs_the_schedulers_state_too():
    opt = sgd()
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    for _ in range(9):
        opt.step()
        sched.step()
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    opt2 = sgd()
    sched2 = Scheduler(opt2, SPEC, total_steps=TOTAL)
    opt2.load_state_dict(opt_state)  # torch's order: optimizer state after the scheduler was built
    with pytest.raises(CadenceError, match="optimizer.load_state_dict without the scheduler's load_state_dict"):
        sched2.step()  # without the scheduler's state the run would restart its schedule
    sched2.load_state_dict(sched_state)
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == expected()[10]


def test_cadence_combinators_give_what_chained_and_sequential_torch_schedulers_give():
    # ChainedScheduler([ConstantLR(factor=0.1, total_iters=5), ExponentialLR(gamma=0.9)]): a product
    opt = sgd(lr=1.0)
    chain = L.ChainedScheduler([L.ConstantLR(opt, factor=0.1, total_iters=5), L.ExponentialLR(opt, gamma=0.9)])
    theirs = []
    for _ in range(TOTAL):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        chain.step()
    ours = expected("scale(exponential(peak=1.0, factor=0.9), by=join(constant(value=0.1), constant(value=1.0), at=[5]))")
    assert ours == pytest.approx(theirs, rel=1e-12)
    # SequentialLR([LinearLR(0.1 -> 1, 4 steps), CosineAnnealingLR(T_max=16)], milestones=[4]): a join
    opt = sgd(lr=1.0)
    seq = L.SequentialLR(opt, [L.LinearLR(opt, start_factor=0.1, total_iters=4),
                               L.CosineAnnealingLR(opt, T_max=16)], milestones=[4])
    theirs = []
    for _ in range(TOTAL):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        seq.step()
    ours = expected("join(linear(peak=0.1, final=1.0), cosine(peak=1.0), at=[4])")
    assert ours[:5] == pytest.approx([0.1, 0.325, 0.55, 0.775, 1.0])
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


# -- 4. initial_lr ------------------------------------------------------------------------------

def test_each_group_gets_initial_lr_as_torch_schedulers_set_it():
    opt = sgd(lr=0.2, groups=2)
    sched = Scheduler(opt, WARM, total_steps=TOTAL)  # the schedule starts at 0 (a warmup)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.2, 0.1]  # each group's lr before the schedule's
    assert sched.base_lrs == [0.2, 0.1]
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]
    for _ in range(5):
        opt.step()
        sched.step()
    assert [g["initial_lr"] for g in opt.param_groups] == [0.2, 0.1]  # never moves


def test_an_initial_lr_already_there_is_kept_and_a_tensor_is_copied():
    opt = sgd(lr=0.2)
    opt.param_groups[0]["initial_lr"] = 0.5  # from a torch scheduler or an optimizer checkpoint
    sched = Scheduler(opt, SPEC, total_steps=TOTAL)
    assert opt.param_groups[0]["initial_lr"] == 0.5 and sched.base_lrs == [0.5]

    lr = torch.tensor(0.3)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=lr)
    Scheduler(opt, WARM, total_steps=TOTAL)
    initial = opt.param_groups[0]["initial_lr"]
    assert isinstance(initial, torch.Tensor) and float(initial) == pytest.approx(0.3)
    assert initial is not opt.param_groups[0]["lr"] and float(opt.param_groups[0]["lr"]) == 0.0


def test_a_refused_scheduler_sets_no_initial_lr():
    opt = sgd()
    with pytest.raises(CadenceError):
        Scheduler(opt, "cosine(peak=0.1)")  # no total_steps
    assert "initial_lr" not in opt.param_groups[0] and opt.param_groups[0]["lr"] == 0.1


def test_a_torch_scheduler_resumed_with_last_epoch_finds_initial_lr():
    opt = sgd(lr=0.1, weight_decay=0.1)
    Scheduler(opt, "linear(peak=0.1, final=0.0)", total_steps=TOTAL, field="weight_decay")
    cos = L.CosineAnnealingLR(opt, T_max=10, last_epoch=4)  # KeyError 'initial_lr' without it
    assert cos.base_lrs == [0.1]
