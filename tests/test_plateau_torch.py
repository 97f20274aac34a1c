"""plateau(...) inside a cadence.Plan against torch.optim.lr_scheduler.ReduceLROnPlateau.

Protocol alignment: torch's ``scheduler.step(metric)`` after step k sets the LR used at step
k+1. The plan's loop is ``values()`` (the LR of step k), ``observe({'val_loss': metric})``,
``advance()``. So the plan's LR at step k+1 must be torch's LR after k+1 calls of ``step``.
"""

import json
import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cadence
from cadence.schedules import parse

MONITOR = "val_loss"


class _Groups(torch.optim.Optimizer):
    """Just the param groups ReduceLROnPlateau reads and writes. A real optimizer would do the
    same, but building the first one imports torch._dynamo (3 s), and these tests stay fast."""

    def __init__(self, lr):  # noqa: D107 - Optimizer.__init__ is skipped on purpose
        self.defaults = {"lr": lr}
        self.param_groups = [{"lr": lr}]


def torch_lrs(metrics, lr, **kw):
    """The LR torch uses at steps 0..len(metrics) (one more than there are metrics)."""
    opt = _Groups(lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    out = [opt.param_groups[0]["lr"]]
    for m in metrics:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


def plateau_spec(inner, *, mode, factor, patience, threshold, threshold_mode, cooldown, floor, eps):
    return (f"plateau({inner}, monitor={MONITOR!r}, mode={mode!r}, factor={factor!r}, patience={patience}, "
            f"threshold={threshold!r}, threshold_mode={threshold_mode!r}, cooldown={cooldown}, floor={floor!r}, "
            f"eps={eps!r})")


def plan_lrs(plan, metrics, resume_at=None):
    """The plan's LR at steps 0..len(metrics); optionally checkpointed (JSON) and resumed into a
    fresh plan of the same channels after ``resume_at`` steps."""
    out = []
    for k, m in enumerate(metrics):
        if k == resume_at:
            state = json.loads(json.dumps(plan.state_dict(), allow_nan=False))
            fresh = cadence.Plan({"lr": plan.channels["lr"]}, horizon=plan.horizon)
            fresh.load_state_dict(state)
            plan = fresh
        out.append(plan.values()["lr"])
        plan.observe({MONITOR: m})
        plan.advance()
    out.append(plan.values()["lr"])
    return out


def drops(lrs):
    return [k for k in range(1, len(lrs)) if lrs[k] < lrs[k - 1]]


# Metric sequences: runs of repeated values (plateaus), fresh values, NaN.
_level = st.one_of(
    st.floats(-5.0, 5.0, allow_nan=False),
    st.sampled_from([0.0, 1.0, 1.0, 2.0, -1.0, 1e-9]),
    st.just(math.nan),
)
metric_runs = st.lists(st.tuples(_level, st.integers(1, 8)), max_size=14).map(
    lambda runs: [v for v, n in runs for _ in range(n)][:70])

settings_kw = dict(max_examples=150, deadline=None)


@settings(**settings_kw)
@given(metrics=metric_runs,
       lr=st.sampled_from([1.0, 0.5, 2.0 ** -10, 0.3, 3e-4, 1e-6]),
       mode=st.sampled_from(["min", "max"]),
       threshold_mode=st.sampled_from(["rel", "abs"]),
       threshold=st.sampled_from([0.0, 1e-4, 0.01, 0.5]),
       factor=st.sampled_from([0.1, 0.5, 0.9, 0.3333, 0.999]),
       patience=st.integers(0, 5),
       cooldown=st.integers(0, 3),
       min_lr=st.sampled_from([0.0, 1e-7, 1e-3, 0.05, 0.3, 2.0]),
       eps=st.sampled_from([0.0, 1e-8, 1e-12, 0.01]),
       resume=st.one_of(st.none(), st.integers(0, 70)))
def test_plateau_on_a_constant_is_torch_reduce_lr_on_plateau(metrics, lr, mode, threshold_mode, threshold, factor,
                                                            patience, cooldown, min_lr, eps, resume):
    kw = dict(mode=mode, factor=factor, patience=patience, threshold=threshold, threshold_mode=threshold_mode,
              cooldown=cooldown, eps=eps)
    theirs = torch_lrs(metrics, lr, min_lr=min_lr, **kw)
    spec = plateau_spec(f"constant(value={lr!r})", floor=min_lr, **kw)
    ours = plan_lrs(cadence.Plan({"lr": spec}, horizon=len(metrics) + 1), metrics, resume_at=resume)
    assert len(ours) == len(theirs)
    # the drops happen at exactly the same steps
    assert drops(ours) == drops(theirs)
    if math.frexp(lr)[0] == 0.5:
        # a power of two: lr * f * f * ... (torch) and lr * (f * f * ...) (cadence) are the same floats
        assert ours == theirs
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=0)


@settings(max_examples=60, deadline=None)
@given(metrics=metric_runs, mode=st.sampled_from(["min", "max"]), patience=st.integers(0, 3),
       cooldown=st.integers(0, 2), factor=st.sampled_from([0.1, 0.5, 0.7]))
def test_metrics_given_as_numpy_scalars_or_ints_count_as_floats(metrics, mode, patience, cooldown, factor):
    """torch's step() takes float(metric); a numpy float32/float64 or an int is a metric too,
    and the plan accepts them in observe(), so the controller must count them."""
    spec = plateau_spec("constant(value=1.0)", mode=mode, factor=factor, patience=patience, threshold=1e-4,
                        threshold_mode="rel", cooldown=cooldown, floor=0.0, eps=1e-8)
    ints = [m if math.isnan(m) else round(m) for m in metrics]
    reference = plan_lrs(cadence.Plan({"lr": spec}, horizon=len(metrics) + 1), [float(m) for m in ints])
    assert reference == torch_lrs([float(m) for m in ints], 1.0, mode=mode, factor=factor, patience=patience,
                                  cooldown=cooldown)
    for convert in (np.float64, np.float32):
        got = plan_lrs(cadence.Plan({"lr": spec}, horizon=len(metrics) + 1), [convert(m) for m in ints])
        assert got == reference, convert.__name__
    finite = [m for m in ints if not math.isnan(m)]
    for convert in (int, np.int64):
        got = plan_lrs(cadence.Plan({"lr": spec}, horizon=len(finite) + 1), [convert(m) for m in finite])
        assert got == plan_lrs(cadence.Plan({"lr": spec}, horizon=len(finite) + 1), [float(m) for m in finite]), \
            convert.__name__


def test_numpy_float32_metric_is_counted():
    """Minimal form of the test above: five bad float32 observations with patience 0 drop the LR."""
    plan = cadence.Plan({"lr": "plateau(constant(value=1.0), patience=0, factor=0.5)"}, horizon=10)
    for m in (1.0, 2.0, 3.0):
        plan.values()
        plan.observe({MONITOR: np.float32(m)})
        plan.advance()
    assert plan.values()["lr"] == 0.25
    assert plan.states["lr"]["rule"]["observations"] == 3


HORIZON = 60
BASE_SPEC = "warmup(cosine(peak=1), 10)"
BASE = parse(BASE_SPEC).values(HORIZON)


@settings(max_examples=60, deadline=None)
@given(first=st.floats(-5.0, 5.0), metrics=metric_runs, mode=st.sampled_from(["min", "max"]),
       threshold_mode=st.sampled_from(["rel", "abs"]), threshold=st.sampled_from([0.0, 1e-4, 0.1]),
       factor=st.sampled_from([0.1, 0.5, 0.9]), patience=st.integers(0, 5), cooldown=st.integers(0, 3))
def test_plateau_over_warmup_cosine_is_the_schedule_times_torchs_factor(first, metrics, mode, threshold_mode,
                                                                        threshold, factor, patience, cooldown):
    """What torch cannot do: the schedule under the plateau keeps running. The value is the
    warmup+cosine at the step times the factor torch's rule gives on a constant LR of 1."""
    metrics = [first, *metrics][:HORIZON - 1]  # a finite first metric: never a drop at step 0, where the warmup is 0
    kw = dict(mode=mode, factor=factor, patience=patience, threshold=threshold, threshold_mode=threshold_mode,
              cooldown=cooldown)
    scale = torch_lrs(metrics, 1.0, min_lr=0.0, eps=0.0, **kw)
    plan = cadence.Plan({"lr": plateau_spec(BASE_SPEC, floor=0.0, eps=0.0, **kw)}, horizon=HORIZON)
    ours = plan_lrs(plan, metrics)
    expected = [float(BASE[k]) * scale[k] for k in range(len(metrics) + 1)]
    assert ours == expected
    # and the plan really follows the schedule: between drops the value moves with the warmup/cosine
    assert ours[0] == 0.0 and ours[1] == float(BASE[1]) * scale[1]


def test_plateau_over_warmup_cosine_keeps_warming_up_after_a_drop():
    """A drop during the warmup scales the rest of the warmup; torch's LR would just sit still."""
    plan = cadence.Plan({"lr": f"plateau({BASE_SPEC}, patience=0, factor=0.5)"}, horizon=HORIZON)
    seen = []
    for k, m in enumerate([1.0, 2.0, 2.0, 2.0, 2.0]):
        seen.append(plan.values()["lr"])
        plan.observe({MONITOR: m})
        plan.advance()
    seen.append(plan.values()["lr"])
    # observation 1 (bad) drops the factor to 0.5 from step 2, observation 2 to 0.25, ...
    assert seen == [float(BASE[0]), float(BASE[1]), float(BASE[2]) * 0.5, float(BASE[3]) * 0.25,
                    float(BASE[4]) * 0.125, float(BASE[5]) * 0.0625]
