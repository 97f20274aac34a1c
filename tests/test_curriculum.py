"""Curricula: pace() against its formulas and the cyclical paper's rule; sec() and dump() on a
constructed bucket problem (numpy only), deterministic and resumable through JSON."""

import json
import math

import numpy as np
import pytest

from cadence.controllers.curriculum import DUMP, SEC, Pace, _cycle
from cadence.errors import CadenceError, ScheduleError
from cadence.time import Clock, Rates, Unit

T = 100


# -- pace -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["linear", "root", "step"])
def test_monotone_shapes_rise_into_one_and_reach_it_at_full(shape):
    v = Pace(shape=shape, start=0.1, full="60%").values(T)
    assert np.all((v > 0) & (v <= 1))
    assert np.all(np.diff(v) >= 0)
    assert v[0] == 0.1
    assert np.all(v[60:] == 1.0) and v[59] < 1.0  # full = 60% of 100 steps


def test_root_is_the_competence_formula_of_platanios_et_al():
    c0, full = 0.01, 40
    v = Pace(shape="root", start=c0, full=full).values(T)
    for t in (0, 1, 7, 20, 39, 40, 77):
        assert v[t] == pytest.approx(min(1.0, math.sqrt(t * (1 - c0 ** 2) / full + c0 ** 2)), rel=1e-14)
    assert v[10] == pytest.approx(math.sqrt(0.25 * 0.9999 + 0.0001), rel=1e-14)  # 0.50010...


def test_linear_and_step_by_hand():
    lin = Pace(shape="linear", start=0.2, full=50).values(T)
    assert lin[25] == pytest.approx(0.6) and lin[10] == pytest.approx(0.36)
    step = Pace(shape="step", start=0.2, full=50, stages=4).values(T)
    # four equal rises of 0.2 at steps 12.5, 25, 37.5; 1 from 50 on
    assert list(step[[0, 12, 13, 24, 25, 37, 38, 49, 50]]) == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8, 1.0])


def test_cyclical_follows_the_papers_rule():
    # Kesgin & Amasyali's get_cycle_sizes(sp=0.25, ep=1, alfa=0.5): 0.25, 0.5, 1, 0.5, 0.25, 0.5, ...
    assert _cycle(0.25, 1.0, 0.5) == [0.25, 0.5, 1.0, 0.5]
    assert _cycle(0.2, 1.0, 0.5) == [0.2, 0.4, 0.8, 1.0, 0.5, 0.25]
    assert _cycle(0.5, 0.5, 0.5) == [0.5]
    # a stage at fraction c is one pass over c of the data: with every=4 steps the stages last 1, 2, 4, 2 steps
    v = Pace(shape="cyclical", start=0.25, every=4).values(20)
    expected = [0.25, 0.5, 0.5, 1, 1, 1, 1, 0.5, 0.5] * 2 + [0.25, 0.5]
    assert list(v) == expected
    # 'ep' durations read the run's epoch length
    w = Pace(shape="cyclical", start=0.25, every="1ep").values(20, Rates(steps_per_epoch=4))
    assert list(w) == expected
    assert np.all((v > 0) & (v <= 1))


@pytest.mark.parametrize("kw, message", [
    (dict(shape="cosine"), "shape must be one of 'linear', 'root', 'step', 'cyclical'"),
    (dict(start=0), "start must be > 0"),
    (dict(start=1.5), "start must be <= 1"),
    (dict(shape="linear", stages=3), "stages applies to shape='step' only"),
    (dict(shape="root", every=10), "every applies to shape='cyclical' only"),
    (dict(shape="step", stages=0), "stages must be a whole number"),
    (dict(shape="cyclical", factor=1.0), "factor must be < 1"),
    (dict(shape="cyclical", start=0.5, peak=0.4), "peak must be >= start"),
    (dict(full="ten"), "full"),
])
def test_pace_refuses_bad_parameters(kw, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(")):
        Pace(**kw)


def test_pace_refuses_a_full_past_the_run_and_an_epoch_it_cannot_measure():
    with pytest.raises(ScheduleError, match="past the end of the run"):
        Pace(full=200).values(T)
    with pytest.raises(ScheduleError, match="full must be more than 0 steps"):
        Pace(full=0).values(T)
    with pytest.raises(CadenceError, match="every=1ep"):
        Pace(shape="cyclical").values(T)


# -- sec and dump on a constructed problem ------------------------------------------------------

KEYS = ("0", "1", "2", "3")
BATCH = 32


def _true_loss(bucket: int, drawn: int) -> float:
    """Bucket 0 is learned (flat, low), bucket 3 cannot be learned (flat, high); 1 and 2 fall with
    the samples drawn from them."""
    if bucket == 0:
        return 0.5
    if bucket == 3:
        return 3.0
    return 0.8 + (1.7 if bucket == 1 else 2.0) * math.exp(-drawn / (500.0 if bucket == 1 else 1000.0))


def _drive(ctrl, steps, *, seed=0, state=None, start=0, drawn=None, noise=(0.02, 0.02, 0.02, 0.02)):
    """Step by step: value -> draw 32 samples -> each bucket's mean loss (per-sample noise) -> update."""
    clock = Clock(unit=Unit.STEP, horizon=400).advanced_to(start, BATCH * start, 0, 0)
    state = ctrl.init() if state is None else state
    drawn = [0] * len(KEYS) if drawn is None else list(drawn)
    probs = []
    for step in range(start, start + steps):
        p = ctrl.value(state, clock)
        assert set(p) == set(KEYS) and abs(sum(p.values()) - 1) < 1e-12 and min(p.values()) >= ctrl.floor
        probs.append([p[k] for k in KEYS])
        rng = np.random.default_rng([seed, step])
        counts = rng.multinomial(BATCH, np.array(probs[-1]) / sum(probs[-1]))
        signals = {}
        for b, key in enumerate(KEYS):
            n = int(counts[b])
            drawn[b] += n
            signals[f"bucket_loss/{key}"] = (_true_loss(b, drawn[b]) + rng.normal(0.0, noise[b]) / math.sqrt(n)
                                             if n else None)
        before = json.dumps(state)
        new = ctrl.update(state, clock, signals)
        assert json.dumps(state) == before  # update never changes the state it is given
        state = new
        clock = clock.advanced(samples=BATCH)
    return np.array(probs), state, drawn


def _bound(cls, **kw):
    c = cls(**kw)
    c.bind_keys(KEYS)
    return c


@pytest.mark.parametrize("cls", [SEC, DUMP])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learnable_buckets_get_more_probability_than_learned_and_unlearnable(cls, seed):
    probs, _, drawn = _drive(_bound(cls), 200, seed=seed)
    mean = probs.mean(axis=0)
    assert min(mean[1], mean[2]) > max(mean[0], mean[3]), mean
    assert min(drawn[1], drawn[2]) > max(drawn[0], drawn[3]), drawn


@pytest.mark.parametrize("cls", [SEC, DUMP])
def test_a_noisier_bucket_looks_like_progress_to_the_absolute_change(cls):
    # A property of the reward, not a defect of the code: the absolute change of a loss between
    # observations is as large for noise as for learning, so a bucket whose loss is only noisier
    # (10x here) draws most of the probability (docs/curriculum-reference.md says so).
    probs, _, _ = _drive(_bound(cls), 200, seed=0, noise=(0.02, 0.02, 0.02, 0.2))
    mean = probs.mean(axis=0)
    assert mean[3] > 0.5 and mean[3] == mean.max(), mean


@pytest.mark.parametrize("cls", [SEC, DUMP])
def test_two_hundred_steps_equal_one_hundred_a_json_round_trip_and_one_hundred(cls):
    ctrl = _bound(cls)
    straight, end, _ = _drive(ctrl, 200, seed=7)
    first, mid, drawn = _drive(ctrl, 100, seed=7)
    mid = json.loads(json.dumps(mid, allow_nan=False))
    assert ctrl.check_state(mid) is None
    second, resumed, _ = _drive(_bound(cls), 100, seed=7, state=mid, start=100, drawn=drawn)
    assert np.array_equal(np.vstack([first, second]), straight)
    assert resumed == end
    assert json.dumps(end, allow_nan=False)  # plain data, finite


@pytest.mark.parametrize("cls", [SEC, DUMP])
def test_update_is_pure_and_ignores_missing_or_non_finite_losses(cls):
    ctrl = _bound(cls)
    clock = Clock(unit=Unit.STEP, horizon=10)
    state = ctrl.init()
    snapshot = json.dumps(state)
    s1 = ctrl.update(state, clock, {"bucket_loss/0": 1.0, "bucket_loss/1": 2.0})
    assert json.dumps(state) == snapshot
    s2 = ctrl.update(s1, clock, {"bucket_loss/0": math.nan, "bucket_loss/1": None, "bucket_loss/2": "x",
                                 "bucket_loss/3": math.inf})
    assert s2 == s1
    assert ctrl.value(ctrl.init(), clock) == {k: 0.25 for k in KEYS}


def test_sec_is_td0_on_the_normalised_change():
    ctrl = _bound(SEC, alpha=0.5, tau=1.0, floor=0.0)
    clock = Clock(unit=Unit.STEP, horizon=10)
    s = ctrl.update(ctrl.init(), clock, {f"bucket_loss/{k}": 1.0 for k in KEYS})
    s = ctrl.update(s, clock, {"bucket_loss/0": 0.7, "bucket_loss/1": 1.1, "bucket_loss/2": 1.0})
    # changes 0.3, 0.1, 0.0 over their mean 0.4/3: rewards 2.25, 0.75, 0; Q = 0.5 * reward
    assert s["q"] == pytest.approx([1.125, 0.375, 0.0, 0.0])
    p = ctrl.value(s, clock)
    e = [math.exp(q) for q in s["q"]]
    assert [p[k] for k in KEYS] == pytest.approx([x / sum(e) for x in e])


def test_dump_is_ucb_over_a_window_with_softmax():
    ctrl = _bound(DUMP, window=2, temperature=0.1, floor=0.0)
    clock = Clock(unit=Unit.STEP, horizon=10)
    s = ctrl.init()
    for losses in ([1.0, 1.0, 1.0, 1.0], [0.9, 1.0, 1.0, 1.0], [0.9, 0.8, 1.0, 1.0], [0.5, 0.8, 1.0, None]):
        s = ctrl.update(s, clock, {f"bucket_loss/{k}": v for k, v in zip(KEYS, losses)})
    # rewards per step: (4, 0, 0, 0), (0, 4, 0, 0), (3, 0, 0, -): the window keeps the last two
    assert s["rewards"] == [[0.0, pytest.approx(3.0)], [4.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert s["count"] == [4, 4, 4, 3]
    scores = [1.5 + math.sqrt(2 * math.log(16) / 5), 2.0 + math.sqrt(2 * math.log(16) / 5),
              math.sqrt(2 * math.log(16) / 5), math.sqrt(2 * math.log(16) / 4)]
    assert ctrl.diagnose(s) == {f"score/{k}": pytest.approx(v) for k, v in zip(KEYS, scores)}
    e = [math.exp((x - max(scores)) / 0.1) for x in scores]
    assert [ctrl.value(s, clock)[k] for k in KEYS] == pytest.approx([x / sum(e) for x in e])


def test_floor_keeps_every_bucket_drawn_and_is_checked_against_the_buckets():
    ctrl = _bound(DUMP, floor=0.05)
    clock = Clock(unit=Unit.STEP, horizon=10)
    s = ctrl.init()
    for _ in range(5):
        s = ctrl.update(s, clock, {"bucket_loss/0": 5.0, "bucket_loss/1": 1.0})
        s = ctrl.update(s, clock, {"bucket_loss/0": 1.0, "bucket_loss/1": 1.0})
    assert min(ctrl.value(s, clock).values()) >= 0.05
    with pytest.raises(ScheduleError, match="floor must be < 1/4"):
        _bound(SEC, floor=0.25)
    with pytest.raises(ScheduleError, match="tau must be > 0"):
        SEC(tau=0)
    with pytest.raises(ScheduleError, match="window must be a whole number"):
        DUMP(window=0)
    assert _bound(SEC).monitors == tuple(f"bucket_loss/{k}" for k in KEYS)


@pytest.mark.parametrize("cls, bad", [
    (SEC, {"q": [0.0] * 3, "last": [None] * 4}),
    (SEC, {"q": [0.0] * 4, "last": [None] * 4, "extra": 1}),
    (SEC, {"q": [0.0] * 4, "last": [math.nan] + [None] * 3}),
    (DUMP, {"rewards": [[]] * 4, "count": [0, 0, 0, -1], "last": [None] * 4}),
    (DUMP, {"rewards": [[9.0]] + [[]] * 3, "count": [0] * 4, "last": [None] * 4}),
])
def test_check_state_names_what_is_wrong(cls, bad):
    assert isinstance(_bound(cls).check_state(bad), str)
