"""Controller building blocks: the plateau rule against torch, the noise-scale estimators."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.controllers.noise import NoiseScale, noise_scale
from cadence.controllers.plateau_rule import PlateauRule
from cadence.errors import CadenceError, ScheduleError


def _torch_lrs(metrics, lr, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


def _cadence_lrs(metrics, lr, min_lr=0.0, **kw):
    rule = PlateauRule(**kw)
    state, out = rule.init(), []
    floor = min(lr, min_lr)  # a drop never goes below min_lr, and never raises a value already below it
    for m in metrics:
        current = max(lr * state["scale"], floor)
        state = rule.observe(state, m, current, floor)
        out.append(max(lr * state["scale"], floor))
    return out


@settings(max_examples=300, deadline=None)
@given(metrics=st.lists(st.one_of(st.floats(0.0, 10.0), st.sampled_from([1.0, 1.0, 2.0, math.nan])), max_size=80),
       mode=st.sampled_from(["min", "max"]), threshold_mode=st.sampled_from(["rel", "abs"]),
       factor=st.sampled_from([0.1, 0.5, 0.9]), patience=st.integers(0, 5), cooldown=st.integers(0, 4),
       threshold=st.sampled_from([0.0, 1e-4, 0.1]), min_lr=st.sampled_from([0.0, 1e-3, 0.05]),
       lr=st.sampled_from([1.0, 0.3, 1e-6]))
def test_plateau_rule_drops_exactly_where_torch_does(metrics, mode, threshold_mode, factor, patience, cooldown,
                                                     threshold, min_lr, lr):
    kw = dict(mode=mode, factor=factor, patience=patience, threshold=threshold, threshold_mode=threshold_mode,
              cooldown=cooldown)
    theirs = _torch_lrs(metrics, lr, min_lr=min_lr, **kw)
    ours = _cadence_lrs(metrics, lr, min_lr=min_lr, **kw)
    # same drops at the same observations; the values agree to rounding (torch multiplies the
    # running LR, cadence the scale)
    assert np.allclose(ours, theirs, rtol=1e-12, atol=0)
    assert [a < b for a, b in zip(ours[1:], ours)] == [a < b for a, b in zip(theirs[1:], theirs)]


@pytest.mark.parametrize("kw, message", [
    (dict(mode="lowest"), "mode must be 'min' or 'max'"),
    (dict(factor=1.0), "factor must be a number in (0, 1)"),
    (dict(patience=-1), "patience must be a whole number"),
    (dict(threshold=math.nan), "threshold must be a finite number"),
    (dict(threshold_mode="pct"), "threshold_mode must be 'rel' or 'abs'"),
])
def test_plateau_rule_refuses_bad_settings(kw, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PlateauRule(**kw)


def _sampled_sq_norms(rng, G, sigma_sqrt, batch, n):
    """|mean of `batch` per-sample gradients|^2 for `n` independent batches."""
    d = len(G)
    noise = rng.standard_normal((n, batch, d)) @ sigma_sqrt.T
    grads = G + noise.mean(axis=1)
    return (grads ** 2).sum(axis=1)


def test_noise_scale_is_unbiased_on_a_problem_with_a_known_answer():
    rng = np.random.default_rng(0)
    d = 6
    G = rng.standard_normal(d) * 0.3
    A = rng.standard_normal((d, d))
    true_g2, true_trace = float(G @ G), float(np.trace(A @ A.T))
    b, B, n = 4, 64, 20000
    small = _sampled_sq_norms(rng, G, A, b, n)
    big = _sampled_sq_norms(rng, G, A, B, n)
    est = np.array([noise_scale([s], b, g, B) for s, g in zip(small, big)])
    g2, trace = est.mean(axis=0)
    se = est.std(axis=0) / math.sqrt(n)
    assert abs(g2 - true_g2) < 4 * se[0]
    assert abs(trace - true_trace) < 4 * se[1]


def test_running_b_simple_divides_averages_and_converges():
    rng = np.random.default_rng(1)
    d = 5
    G = np.full(d, 0.2)
    A = np.eye(d) * 0.5
    true_b = float(np.trace(A @ A.T) / (G @ G))  # 1.25 / 0.2 = 6.25
    ns = NoiseScale(beta=0.999)
    state = ns.init()
    assert math.isnan(ns.b_simple(state))
    micro, accum = 2, 8
    for _ in range(6000):
        noise = rng.standard_normal((accum, micro, d)) @ A.T
        micro_grads = G + noise.mean(axis=1)
        big = micro_grads.mean(axis=0)
        g2, trace = noise_scale((micro_grads ** 2).sum(axis=1), micro, float(big @ big), micro * accum)
        state = ns.update(state, g2, trace)
    assert ns.b_simple(state) == pytest.approx(true_b, rel=0.1)
    assert set(state) == {"g2", "trace", "count"} and state["count"] == 6000


def test_noise_scale_refuses_what_it_cannot_use():
    with pytest.raises(CadenceError, match="0 < small_batch < big_batch"):
        noise_scale([1.0], 8, 1.0, 8)
    with pytest.raises(CadenceError, match="finite number >= 0"):
        noise_scale([math.nan], 2, 1.0, 8)
    with pytest.raises(CadenceError, match="at least one"):
        noise_scale([], 2, 1.0, 8)
    ns = NoiseScale()
    assert ns.update(ns.init(), math.inf, 1.0) == ns.init()
