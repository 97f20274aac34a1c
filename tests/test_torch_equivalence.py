"""Where a family also exists in torch.optim.lr_scheduler, the two agree step for step."""

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as L

from cadence import schedules as S

T = 120


def torch_values(make, lr=1.0, momentum=0.9, total=T):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make(opt)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def same(a, b):
    # torch updates most schedulers recursively; the difference is accumulated rounding.
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("final", [0.0, 0.05])
def test_cosine_is_cosine_annealing(final):
    same(S.cosine(peak=1.0, final=final).values(T), torch_values(lambda o: L.CosineAnnealingLR(o, T_max=T, eta_min=final)))


def test_step_is_steplr():
    same(S.step(peak=1.0, every=13, factor=0.3).values(T), torch_values(lambda o: L.StepLR(o, step_size=13, gamma=0.3)))


def test_multistep_is_multisteplr():
    same(S.multistep(peak=1.0, milestones=[10, 40, 41, 90], factor=0.5).values(T),
         torch_values(lambda o: L.MultiStepLR(o, milestones=[10, 40, 41, 90], gamma=0.5)))


def test_exponential_is_exponentiallr():
    same(S.exponential(peak=1.0, factor=0.97).values(T), torch_values(lambda o: L.ExponentialLR(o, gamma=0.97)))


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_polynomial_is_polynomiallr(power):
    same(S.polynomial(peak=1.0, power=power).values(T),
         torch_values(lambda o: L.PolynomialLR(o, total_iters=T, power=power)))


@pytest.mark.parametrize("mult", [1, 2, 3])
def test_sgdr_is_warm_restarts(mult):
    same(S.sgdr(peak=1.0, period=10, mult=mult, final=0.01).values(T),
         torch_values(lambda o: L.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=mult, eta_min=0.01)))


@pytest.mark.parametrize("shape, anneal", [("cos", "cos"), ("linear", "linear")])
@pytest.mark.parametrize("three_phase", [False, True])
def test_onecycle_is_onecyclelr(shape, anneal, three_phase):
    ours = S.onecycle(peak=1.0, warmup="30%", shape=shape, three_phase=three_phase).values(T)
    theirs = torch_values(lambda o: L.OneCycleLR(o, max_lr=1.0, total_steps=T, pct_start=0.3, anneal_strategy=anneal,
                                                  three_phase=three_phase, cycle_momentum=False))
    same(ours, theirs)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_is_cycliclr(mode):
    ours = S.cyclic(low=0.1, peak=1.0, up=7, down=5, mode=mode, gamma=0.99).values(T)
    theirs = torch_values(lambda o: L.CyclicLR(o, base_lr=0.1, max_lr=1.0, step_size_up=7, step_size_down=5, mode=mode,
                                                gamma=0.99, cycle_momentum=False))
    same(ours, theirs)


def test_warmup_from_a_start_value_is_linearlr():
    ours = S.warmup(S.constant(value=1.0), duration=20, start=0.25).values(T)
    same(ours, torch_values(lambda o: L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=20)))


def test_join_is_sequentiallr():
    ours = S.join(S.exponential(peak=1.0, factor=0.9), S.step(peak=0.5, every=10, factor=0.5), at=[30]).values(T)
    theirs = torch_values(lambda o: L.SequentialLR(o, [L.ExponentialLR(o, gamma=0.9),
                                                       L.LambdaLR(o, lambda i: 0.5 * 0.5 ** (i // 10))], milestones=[30]))
    same(ours, theirs)
