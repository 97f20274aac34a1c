"""cadence.Plan: channels on one clock (values/observe/advance/skip), the batch channel,
controllers (noise_batch, scale_with), checkpoints, horizons, construction errors, the
registry of controllers and the Clock."""

import json
import math

import numpy as np
import pytest
from conftest import ALL_SPECS, TOTAL

import cadence
import cadence.schedules
from cadence import Clock, Plan, Rates
from cadence.errors import CadenceError, LimitError, PlanError, ScheduleError, SpecError
from cadence.schedules import parse
from cadence.time import Unit


def one_line(e: BaseException) -> str:
    text = str(e)
    assert text and "\n" not in text, repr(text)
    return text


def run(plan, steps, signals=lambda k: {}):
    """values() of ``steps`` steps, observing ``signals(k)`` after each."""
    out = []
    for k in range(steps):
        out.append(plan.values())
        plan.observe(signals(k))
        plan.advance()
    return out


# -- a plain schedule is a controller without state ------------------------------------------

@pytest.mark.parametrize("spec", ALL_SPECS)
def test_values_on_a_step_clock_are_the_schedules_own_values_bit_for_bit(spec):
    expected = parse(spec).values(TOTAL)
    plan = Plan({"lr": spec}, horizon=TOTAL)
    got = []
    while not plan.done:
        got.append(plan.values()["lr"])
        plan.advance()
    assert len(got) == TOTAL and plan.clock.step == TOTAL
    assert np.array_equal(np.array(got), expected)
    assert plan.states == {"lr": None}


def test_several_channels_each_follow_their_schedule():
    specs = {"lr": "cosine(peak=3e-4, warmup=5)", "weight_decay": "linear(peak=0.1, final=0.01)",
             "loss.z": "constant(value=1e-4)", "momentum": 0.9}
    plan = Plan(specs, horizon=TOTAL)
    rows = run(plan, TOTAL)
    for name, spec in specs.items():
        expected = parse(spec).values(TOTAL) if isinstance(spec, str) else np.full(TOTAL, spec)
        assert np.array_equal([r[name] for r in rows], expected), name


def test_values_depend_on_the_clock_never_on_how_often_they_are_asked():
    plan = Plan({"lr": "sgdr(peak=1.0, period=7, mult=2, final=0.05, warmup=3)",
                 "wd": "plateau(cosine(peak=0.1), patience=0)"}, horizon=TOTAL)
    expected = parse("sgdr(peak=1.0, period=7, mult=2, final=0.05, warmup=3)").values(TOTAL)
    for k in range(TOTAL):
        first = plan.values()
        assert first["lr"] == expected[k]
        calls = 100 if k % 17 == 0 else 2
        for _ in range(calls):
            again = plan.values()
            assert again == first
        again["lr"] = -1.0  # the returned dict is the caller's: changing it changes nothing
        assert plan.values() == first
        plan.observe({"val_loss": 1.0})
        plan.advance()


def test_asking_for_values_does_not_change_what_a_controller_does():
    def lrs(extra_calls):
        plan = Plan({"lr": "plateau(cosine(peak=1.0), patience=1, factor=0.5)"}, horizon=40)
        out = []
        for k in range(40):
            for _ in range(extra_calls):
                plan.values()
            out.append(plan.values()["lr"])
            plan.observe({"val_loss": 1.0 + (k % 3 == 0)})
            for _ in range(extra_calls):
                plan.values()
            plan.advance()
        return out, plan.state_dict()
    assert lrs(0) == lrs(1) == lrs(7)


# -- sample and token clocks --------------------------------------------------------------

STEP_COSINE = parse("cosine(peak=1, warmup=100)").values(2000)


def test_a_sample_clock_cosine_is_the_step_clock_cosine_at_the_same_step():
    plan = Plan({"lr": "cosine(peak=1, warmup=100)"}, horizon="64Ksa", unit="sample",
                rates=Rates(samples_per_step=32))
    assert plan.horizon == 64000 and plan.clock.unit is Unit.SAMPLE
    got = []
    while not plan.done:
        got.append(plan.values()["lr"])
        plan.advance()
    assert plan.clock.step == 2000 and plan.clock.samples == 64000
    assert np.array_equal(got, STEP_COSINE)  # warmup=100 steps became 3200 samples


def test_a_token_clock_cosine_is_the_step_clock_cosine_at_the_same_step():
    plan = Plan({"lr": "cosine(peak=1, warmup=100)"}, horizon="65.536Mtok", unit="token",
                rates=Rates(samples_per_step=32, tokens_per_sample=1024))
    assert plan.horizon == 2000 * 32 * 1024
    got = []
    while not plan.done:
        got.append(plan.values()["lr"])
        plan.advance()
    assert plan.clock.step == 2000 and plan.clock.tokens == 65_536_000 and plan.clock.samples == 64000
    assert np.array_equal(got, STEP_COSINE)


def test_a_constant_batch_channel_converts_steps_like_the_rates_do():
    plan = Plan({"lr": "cosine(peak=1, warmup=100)", "batch": 32}, horizon="2000st", unit="sample")
    assert plan.horizon == 64000
    got = []
    while not plan.done:
        v = plan.values()
        assert v["batch"] == 32
        got.append(v["lr"])
        plan.advance()  # samples default to the batch
    assert np.array_equal(got, STEP_COSINE)


def test_steps_on_a_sample_clock_with_a_changing_batch_are_refused_naming_the_channel():
    batch = "ramp(start=32, end=128, duration='10Ksa')"
    with pytest.raises((ScheduleError, PlanError)) as e:
        Plan({"lr": "cosine(peak=1, warmup=100)", "batch": batch}, horizon="64Ksa", unit="sample")
    assert "'lr'" in one_line(e.value) and "warmup" in str(e.value)
    with pytest.raises((ScheduleError, PlanError)) as e:
        Plan({"lr": "cosine(peak=1)", "batch": "ramp(start=32, end=128, duration=100)"}, horizon="64Ksa",
             unit="token", rates=Rates(tokens_per_sample=16))
    assert "'batch'" in one_line(e.value)
    with pytest.raises(PlanError) as e:
        Plan({"lr": "cosine(peak=1)", "batch": batch}, horizon="2000st", unit="sample")
    assert "horizon" in one_line(e.value)
    # in samples or as a fraction it is fine
    plan = Plan({"lr": "cosine(peak=1, warmup='5%')", "batch": batch}, horizon="64Ksa", unit="sample")
    assert plan.values() == {"batch": 32, "lr": 0.0}


# -- the batch channel ----------------------------------------------------------------------

def test_a_batch_ramp_gives_whole_micro_batches_and_the_counters_follow_it():
    plan = Plan({"lr": "cosine(peak=1)", "batch": "ramp(start=32, end=128, duration=100, shape='cosine')"},
                horizon=300, micro_batch=8, rates=Rates(tokens_per_sample=7))
    raw = parse("ramp(start=32, end=128, duration=100, shape='cosine')").values(300)
    batches = []
    for k in range(300):
        b = plan.values()["batch"]
        assert isinstance(b, int) and b % 8 == 0 and 8 <= b <= 128
        assert b == int(raw[k] // 8) * 8  # rounded down to a whole micro-batch
        batches.append(b)
        clock = plan.advance()
        assert clock.samples == sum(batches)  # advance() counts the real batch
        assert clock.tokens == 7 * sum(batches)  # and tokens as samples * tokens_per_sample
    assert batches[0] == 32 and batches[-1] == 128 and batches == sorted(batches)


def test_a_batch_ramp_on_a_sample_clock_is_read_at_the_samples_seen():
    spec = "ramp(start=16, end=64, duration='4Ksa')"
    plan = Plan({"batch": spec}, horizon="20Ksa", unit="sample", micro_batch=16)
    ramp = parse(spec)
    seen = 0
    while not plan.done:
        b = plan.values()["batch"]
        assert b == max(16, int(ramp.value_at(seen, 20000, Rates(samples_per_step=1)) // 16) * 16)
        plan.advance()
        seen += b
        assert plan.clock.samples == plan.clock.position == seen
    assert plan.clock.samples >= 20000


def test_the_batch_never_falls_below_one_micro_batch():
    plan = Plan({"batch": "piecewise(points=[[0, 16], [10, 3], [20, 16]])"}, horizon=30, micro_batch=8)
    got = [v["batch"] for v in run(plan, 30)]
    assert min(got) == 8 and all(b % 8 == 0 for b in got)


@pytest.mark.parametrize("batch", [30, 4, "ramp(start=30, end=128, duration=100)", "constant(value=12)"])
def test_a_first_batch_that_is_not_whole_micro_batches_is_refused(batch):
    with pytest.raises(PlanError) as e:
        Plan({"lr": "cosine(peak=1)", "batch": batch}, horizon=200, micro_batch=8)
    assert "micro" in one_line(e.value)


def test_a_first_batch_of_whole_micro_batches_is_accepted():
    for batch in (8, 64, "ramp(start=24, end=100, duration=10)"):
        assert Plan({"batch": batch}, horizon=20, micro_batch=8).values()["batch"] % 8 == 0


def test_advance_defaults_and_explicit_counts():
    plan = Plan({"lr": 0.1}, horizon=10, rates=Rates(samples_per_step=4, tokens_per_sample=3))
    assert plan.advance().counters() == {"step": 1, "samples": 4, "tokens": 12, "skipped": 0}
    assert plan.advance(samples=5).counters() == {"step": 2, "samples": 9, "tokens": 27, "skipped": 0}
    assert plan.advance(samples=1, tokens=2).counters() == {"step": 3, "samples": 10, "tokens": 29, "skipped": 0}
    before = plan.clock
    for bad in (-1, 1.5, "3", math.nan):
        with pytest.raises(PlanError):
            plan.advance(samples=bad)
    assert plan.clock is before
    with pytest.raises(PlanError):
        Plan({"lr": 0.1}, horizon=10, unit="sample").advance()  # a sample clock needs to know the samples


# -- skip ---------------------------------------------------------------------------------------

def test_skip_moves_only_the_skipped_counter():
    plan = Plan({"lr": "plateau(cosine(peak=1.0), patience=0)", "batch": "ramp(start=8, end=32, duration=10)",
                 "wd": "linear(peak=0.1)"}, horizon=30, micro_batch=8, rates=Rates(tokens_per_sample=2))
    run(plan, 5, lambda k: {"val_loss": 1.0 + k})
    values, states, counters = plan.values(), json.dumps(plan.states), plan.clock.counters()
    for n in range(1, 4):
        clock = plan.skip()
        assert clock is plan.clock and clock.skipped == counters["skipped"] + n
        assert {k: v for k, v in clock.counters().items() if k != "skipped"} == \
            {k: v for k, v in counters.items() if k != "skipped"}
        assert plan.values() == values and json.dumps(plan.states) == states
    plan.advance()
    assert plan.clock.step == counters["step"] + 1 and plan.clock.skipped == 3


@pytest.mark.parametrize("signals", [{"val_loss": "1.0"}, {"val_loss": True}, {3: 1.0}, [("val_loss", 1.0)],
                                     {"val_loss": [1.0]}])
def test_observe_refuses_what_is_not_a_signal_and_changes_nothing(signals):
    plan = Plan({"lr": "plateau(constant(value=1.0), patience=0)"}, horizon=10)
    run(plan, 2, lambda k: {"val_loss": 1.0})
    before = plan.state_dict()
    with pytest.raises(PlanError) as e:
        plan.observe(signals)
    one_line(e.value)
    assert plan.state_dict() == before


# -- noise_batch ------------------------------------------------------------------------------

def noise_plan(**kw):
    params = dict(start=32, max=1000, growth=1.1, min_observations=5, beta=0.9) | kw
    spec = "noise_batch(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"
    return Plan({"batch": spec}, micro_batch=8)


def test_noise_batch_grows_towards_b_simple_bounded_by_growth_and_max():
    plan = noise_plan()
    states, values = [], []
    for k in range(120):
        values.append(plan.values()["batch"])
        states.append(plan.states["batch"]["batch"])
        plan.observe({"noise_g2": 2.0, "noise_trace": 1000.0})  # B_simple = 500
        plan.advance()
    states.append(plan.states["batch"]["batch"])
    assert states[:5] == [32.0] * 5 and values[:5] == [32] * 5  # nothing before min_observations
    assert states[5] == pytest.approx(32 * 1.1, rel=1e-15)  # the fifth observation may grow it
    for a, b in zip(states, states[1:]):
        assert a <= b <= a * 1.1  # never shrinks, never more than growth per step
    assert states[-1] == pytest.approx(500, rel=1e-12)
    assert all(v % 8 == 0 and v <= 1000 for v in values) and values == sorted(values)
    assert values[-1] == 496  # rounded down to whole micro-batches
    assert plan.states["batch"]["b_simple"] == pytest.approx(500, rel=1e-12)


def test_noise_batch_stops_at_max_and_never_shrinks():
    plan = noise_plan(max=300, growth=2.0, min_observations=1)
    run(plan, 20, lambda k: {"noise_g2": 1.0, "noise_trace": 1e6})
    assert plan.states["batch"]["batch"] == 300.0 and plan.values()["batch"] == 296
    run(plan, 50, lambda k: {"noise_g2": 1.0, "noise_trace": 1.0})  # B_simple falls to ~1
    assert plan.states["batch"]["batch"] == 300.0 and plan.values()["batch"] == 296


def test_noise_batch_below_start_stays_at_start():
    plan = noise_plan(min_observations=1)
    run(plan, 30, lambda k: {"noise_g2": 1.0, "noise_trace": 4.0})
    assert plan.states["batch"]["batch"] == 32.0 and plan.values()["batch"] == 32


def test_noise_batch_counts_only_observations_with_both_signals():
    plan = noise_plan(min_observations=3, growth=2.0)
    signals = [{}, {"noise_g2": 1.0}, {"noise_g2": None, "noise_trace": 1e4},
               {"noise_g2": math.nan, "noise_trace": 1e4},
               {"noise_g2": 1.0, "noise_trace": 1e4}, {"noise_g2": 1.0, "noise_trace": 1e4}]
    run(plan, len(signals), lambda k: signals[k])
    assert plan.states["batch"]["noise"]["count"] == 2 and plan.states["batch"]["batch"] == 32.0
    run(plan, 1, lambda k: {"noise_g2": 1.0, "noise_trace": 1e4})
    assert plan.states["batch"]["batch"] == 64.0


# -- scale_with -------------------------------------------------------------------------------

def test_scale_with_multiplies_by_the_square_root_of_the_real_batch():
    plan = Plan({"lr": "scale_with(cosine(peak=1), reference=64)",
                 "batch": "ramp(start=32, end=256, duration=50)"}, horizon=100, micro_batch=16)
    cos = parse("cosine(peak=1)").values(100)
    for k in range(100):
        v = plan.values()
        assert v["batch"] % 16 == 0
        assert v["lr"] == pytest.approx(cos[k] * math.sqrt(v["batch"] / 64), rel=1e-14, abs=0)
        plan.advance()


def test_scale_with_follows_noise_batch_and_a_plateau_under_it():
    plan = Plan({"lr": "scale_with(plateau(constant(value=0.1), patience=0, factor=0.5), reference=32, power=1)",
                 "batch": "noise_batch(start=32, max=128, growth=2.0, min_observations=1)"}, micro_batch=32)
    rows = run(plan, 4, lambda k: {"val_loss": 1.0, "noise_g2": 1.0, "noise_trace": 1e4})
    assert [r["batch"] for r in rows] == [32, 64, 128, 128]
    # the first observation is never a bad one: the plateau drops after the second
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.1 * 2, 0.1 * 0.5 * 4, 0.1 * 0.25 * 4], rel=1e-15)


@pytest.mark.parametrize("channels, fragment", [
    ({"lr": "scale_with(cosine(peak=1), reference=64)"}, "'batch'"),
    ({"lr": "scale_with(cosine(peak=1), reference=64, channel='bs')", "batch": 64}, "'bs'"),
    ({"a": "scale_with(constant(value=1), reference=1, channel='b')",
      "b": "scale_with(constant(value=1), reference=1, channel='a')"}, "cycle"),
    ({"a": "scale_with(constant(value=1), reference=1, channel='a')"}, "cycle"),
    ({"a": "scale_with(constant(value=1), reference=1, channel='b')",
      "b": "scale_with(constant(value=1), reference=1, channel='c')",
      "c": "scale_with(constant(value=1), reference=1, channel='a')", "batch": 8}, "cycle"),
])
def test_a_channel_reading_a_missing_channel_or_a_cycle_is_refused(channels, fragment):
    with pytest.raises(PlanError) as e:
        Plan(channels, horizon=10)
    assert fragment in one_line(e.value)


# -- checkpoints -------------------------------------------------------------------------------

def resume_case(name):
    """(make a plan, signals of step k, steps) for two plans that use every controller."""
    rng = np.random.default_rng(7)
    losses = rng.uniform(0.5, 1.5, 200)
    losses[[3, 17, 40]] = math.nan
    if name == "step":
        def make():
            return Plan({"lr": "scale_with(plateau(warmup(cosine(peak=1e-3, final=1e-5), 10), patience=2, "
                               "factor=0.5, cooldown=1), reference=64)",
                         "batch": "noise_batch(start=32, max=512, min_observations=3, growth=1.2)",
                         "loss.z": "linear(peak=1e-4)"}, horizon=80, micro_batch=8,
                        rates=Rates(tokens_per_sample=16))

        def signals(k):
            out = {"val_loss": float(losses[k]) if k % 4 == 0 else None}
            if k % 5:
                out |= {"noise_g2": 1.0 + 0.1 * math.sin(k), "noise_trace": 300.0 + k}
            return out
        return make, signals, 80

    def make():
        return Plan({"lr": "plateau(cosine(peak=1, warmup='1Ksa'), patience=1, factor=0.3, floor=0.01)",
                     "batch": "ramp(start=16, end=64, duration='2Ksa')"}, horizon="20Ksa", unit="sample",
                    micro_batch=16)
    return make, lambda k: {"val_loss": float(losses[k % 200])}, None


@pytest.mark.parametrize("case", ["step", "sample"])
@pytest.mark.parametrize("at", [0, 1, 9, 33, 60])
def test_a_plan_resumed_from_json_gives_the_same_future_bit_for_bit(case, at):
    make, signals, steps = resume_case(case)
    original = make()
    skips = {5, 21, 50}
    for k in range(at):
        original.values()
        if k in skips:
            original.skip()
            continue
        original.observe(signals(k))
        original.advance()
    text = json.dumps(original.state_dict(), allow_nan=False)
    resumed = make()
    resumed.load_state_dict(json.loads(text))
    assert resumed.state_dict() == original.state_dict()
    k = at
    while not original.done:
        v = original.values()
        assert resumed.values() == v, k
        for plan in (original, resumed):
            if k in skips:
                plan.skip()
            else:
                plan.observe(signals(k))
                plan.advance()
        k += 1
    assert resumed.done and resumed.state_dict() == original.state_dict()
    json.dumps(original.state_dict(), allow_nan=False)


@pytest.mark.parametrize("mode, metric", [("max", math.inf), ("min", -math.inf), ("min", math.inf),
                                          ("max", -math.inf)])
def test_a_state_after_an_infinite_metric_is_still_json_and_loads(mode, metric):
    spec = f"plateau(constant(value=1.0), mode={mode!r}, patience=0, factor=0.5)"
    plan = Plan({"lr": spec}, horizon=20)
    for m in (1.0, metric, 2.0, 3.0):
        plan.values()
        plan.observe({"val_loss": m})
        plan.advance()
    text = json.dumps(plan.state_dict(), allow_nan=False)
    fresh = Plan({"lr": spec}, horizon=20)
    fresh.load_state_dict(json.loads(text))
    assert fresh.values() == plan.values()
    plan.observe({"val_loss": 0.5})
    fresh.observe({"val_loss": 0.5})
    assert fresh.values() == plan.values()


def refusal_plan():
    plan = Plan({"lr": "plateau(cosine(peak=1), patience=1)",
                 "batch": "noise_batch(start=32, max=256, min_observations=2)"}, horizon=100, micro_batch=8)
    run(plan, 10, lambda k: {"val_loss": 1.0, "noise_g2": 1.0, "noise_trace": 100.0})
    return plan


REFUSAL_STATE = None


def good_state():
    global REFUSAL_STATE
    if REFUSAL_STATE is None:
        REFUSAL_STATE = json.dumps(refusal_plan().state_dict(), allow_nan=False)
    return json.loads(REFUSAL_STATE)


def _set(path, value):
    def change(state):
        *keys, last = path
        target = state
        for key in keys:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
        return state
    return change


PLAN_ERRORS = {
    "another format": _set(["format"], "cadence.plan/2"),
    "no format": _set(["format"], KeyError),
    "not a mapping": lambda s: [s],
    "None": lambda s: None,
    "other channels": _set(["channels", "lr"], "cosine(peak=1)"),
    "one channel less": _set(["channels", "batch"], KeyError),
    "another unit": _set(["unit"], "sample"),
    "another horizon": _set(["horizons"], [[0, 200, "replan"]]),
    "no horizon": _set(["horizons"], []),
    "no states": _set(["states"], KeyError),
    "clock -1": _set(["clock", "step"], -1),
    "clock 1.5": _set(["clock", "samples"], 1.5),
    "clock str": _set(["clock", "tokens"], "3"),
    "clock bool": _set(["clock", "skipped"], True),
    "clock missing": _set(["clock", "step"], KeyError),
    "clock extra": _set(["clock", "epoch"], 1),
    "clock list": _set(["clock"], [10, 0, 0, 0]),
    "clock past 2**53": _set(["clock", "step"], 2**60),
    "state missing": _set(["states", "batch"], KeyError),
    "state extra": _set(["states", "extra"], None),
    "rule missing key": _set(["states", "lr", "rule", "best"], KeyError),
    "rule extra key": _set(["states", "lr", "rule", "level"], 1),
    "rule not a dict": _set(["states", "lr", "rule"], 5),
    "scale a string": _set(["states", "lr", "rule", "scale"], "x"),
    "scale None": _set(["states", "lr", "rule", "scale"], None),
    "reductions a dict": _set(["states", "lr", "rule", "reductions"], {}),
    "noise a list": _set(["states", "batch", "noise"], [1, 2]),
    "batch negative": _set(["states", "batch", "batch"], -3),
    "batch a string": _set(["states", "batch", "batch"], "64"),
}


@pytest.mark.parametrize("name", list(PLAN_ERRORS))
def test_load_state_dict_refuses_with_a_plan_error_and_changes_nothing(name):
    plan = Plan({"lr": "plateau(cosine(peak=1), patience=1)",
                 "batch": "noise_batch(start=32, max=256, min_observations=2)"}, horizon=100, micro_batch=8)
    run(plan, 3, lambda k: {"val_loss": 2.0 - k, "noise_g2": 1.0, "noise_trace": 50.0})
    before, values, clock = plan.state_dict(), plan.values(), plan.clock
    with pytest.raises(PlanError) as e:
        plan.load_state_dict(PLAN_ERRORS[name](good_state()))
    one_line(e.value)
    assert plan.state_dict() == before and plan.values() == values and plan.clock is clock
    run(plan, 1, lambda k: {"val_loss": 0.0, "noise_g2": 1.0, "noise_trace": 50.0})  # still works


def plain_plan():
    plan = Plan({"lr": "cosine(peak=1)"}, horizon=100)
    run(plan, 10)
    return plan


@pytest.mark.parametrize("horizons", [
    [[50, 100, "replan"]],  # the first record is at 0
    [[0, 100, "replan"], [5, 3, "replan"]],  # a horizon before its own position
    [[0, 100, "replan"], [50, 200, "replan"], [20, 300, "replan"]],  # positions go back
    [[0, 100, "replan"], [-5, 200, "replan"]],
    [[0, 100, "replan"], [5, 2**60, "replan"]],
    [[0, 100, "sideways"]],
    [[0, 100]],
    "[[0, 100, 'replan']]",
])
def test_malformed_horizon_records_are_refused_and_change_nothing(horizons):
    plan = plain_plan()
    state = plan.state_dict()
    state["horizons"] = horizons
    before = plan.state_dict()
    with pytest.raises(CadenceError) as e:
        plan.load_state_dict(state)
    one_line(e.value)
    assert plan.state_dict() == before


def test_a_state_whose_horizon_disagrees_with_its_records_is_refused():
    plan = plain_plan()
    state = plan.state_dict()
    state["horizon"] = 200
    before = plan.state_dict()
    with pytest.raises(PlanError):
        plan.load_state_dict(state)
    assert plan.state_dict() == before


def test_a_state_of_a_plan_with_another_horizon_is_refused_both_ways():
    short, long = Plan({"lr": "cosine(peak=1)"}, horizon=100), Plan({"lr": "cosine(peak=1)"}, horizon=200)
    with pytest.raises(PlanError, match="horizon"):
        short.load_state_dict(long.state_dict())
    with pytest.raises(PlanError, match="horizon"):
        long.load_state_dict(short.state_dict())
    with pytest.raises(PlanError, match="horizon"):
        Plan({"lr": 0.1}).load_state_dict(Plan({"lr": 0.1}, horizon=5).state_dict())


def test_a_state_of_another_clock_unit_is_refused():
    steps = Plan({"lr": 0.1}, horizon=100)
    samples = Plan({"lr": 0.1}, horizon=100, unit="sample", rates=Rates(samples_per_step=1))
    with pytest.raises(PlanError, match="clock"):
        steps.load_state_dict(samples.state_dict())


# -- set_horizon -------------------------------------------------------------------------------

SPEC = "cosine(peak=1, final=0.1, warmup=5)"


@pytest.mark.parametrize("mode", ["replan", "stretch"])
def test_set_horizon_keeps_the_values_already_used(mode):
    plan = Plan({"lr": SPEC}, horizon=100)
    used = [v["lr"] for v in run(plan, 40)]
    before = plan.values()["lr"]
    plan.set_horizon(200, mode)
    assert plan.horizon == 200 and plan.clock.horizon == 200 and plan.horizons == [[0, 100, "replan"],
                                                                                  [40, 200, mode]]
    now = plan.values()["lr"]
    if mode == "replan":
        assert now == parse(SPEC).values(200)[40]  # from now on the plan for 200 steps
    else:
        assert now == pytest.approx(before, rel=1e-12)  # continuous
    # the steps already run give what they gave: rewind the clock of a copy of the state
    state = plan.state_dict()
    for k in (0, 3, 17, 39):
        state["clock"] = {"step": k, "samples": 0, "tokens": 0, "skipped": 0}
        again = Plan({"lr": SPEC}, horizon=100)
        again.load_state_dict(json.loads(json.dumps(state)))
        assert again.horizons == plan.horizons and again.values()["lr"] == used[k]
    rest = [v["lr"] for v in run(plan, 160)]
    assert plan.done and plan.clock.step == 200 and min(rest) >= 0.1 - 1e-12


def test_set_horizon_twice_at_the_same_step_keeps_the_last():
    plan = Plan({"lr": SPEC}, horizon=100)
    run(plan, 10)
    plan.set_horizon(300)
    plan.set_horizon(150, "stretch")
    assert plan.horizons == [[0, 100, "replan"], [10, 150, "stretch"]] and plan.horizon == 150


def test_set_horizon_is_refused_for_plans_with_controllers():
    plan = Plan({"lr": "plateau(cosine(peak=1))", "wd": "linear(peak=0.1)"}, horizon=100)
    run(plan, 5, lambda k: {"val_loss": 1.0})
    before = plan.state_dict()
    with pytest.raises(PlanError) as e:
        plan.set_horizon(200)
    assert "controller" in one_line(e.value) and plan.state_dict() == before


@pytest.mark.parametrize("args", [(10,), (5,), (200.0,), ("200",), (200, "sideways"), (True,), (2**60,)])
def test_bad_set_horizon_is_refused_and_changes_nothing(args):
    plan = Plan({"lr": SPEC}, horizon=100)
    run(plan, 10)
    before, values = plan.state_dict(), plan.values()
    with pytest.raises(CadenceError) as e:
        plan.set_horizon(*args)
    one_line(e.value)
    assert plan.state_dict() == before and plan.values() == values


# -- construction ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error", [
    (dict(channels={}), PlanError),
    (dict(channels=[("lr", 0.1)]), PlanError),
    (dict(channels={"": 0.1}), PlanError),
    (dict(channels={"1lr": 0.1}), PlanError),
    (dict(channels={"loss.z.x": 0.1}), PlanError),
    (dict(channels={"lr rate": 0.1}), PlanError),
    (dict(channels={"lr\n": 0.1}), PlanError),
    (dict(channels={5: 0.1}), PlanError),
    (dict(channels={"x" * 65: 0.1}), PlanError),
    (dict(channels={f"c{i}": 0.1 for i in range(65)}), LimitError),
    (dict(unit="epoch"), PlanError),
    (dict(unit="dur"), PlanError),
    (dict(unit=Unit.EPOCH), PlanError),
    (dict(unit=None), PlanError),
    (dict(horizon=0), PlanError),
    (dict(horizon=-5), PlanError),
    (dict(horizon="50%"), PlanError),
    (dict(horizon="0.5dur"), PlanError),
    (dict(horizon="abc"), PlanError),
    (dict(horizon=2.5), PlanError),
    (dict(horizon=math.nan), PlanError),
    (dict(horizon=math.inf), CadenceError),
    (dict(horizon=True), PlanError),
    (dict(horizon=[100]), PlanError),
    (dict(horizon=2**53 + 1), LimitError),
    (dict(horizon=2**64), LimitError),
    (dict(horizon=float(2**54)), CadenceError),
    (dict(horizon="1e16st"), CadenceError),
    (dict(horizon="3ep"), PlanError),  # epochs without steps_per_epoch
    (dict(horizon="1Msa"), PlanError),  # samples without samples_per_step
    (dict(micro_batch=0), PlanError),
    (dict(micro_batch=-8), PlanError),
    (dict(micro_batch=8.0), PlanError),
    (dict(micro_batch=True), PlanError),
    (dict(rates={"samples_per_step": 32}), PlanError),
    (dict(rates=32), PlanError),
    (dict(channels={"lr": "cosine(peak=1)"}, horizon=None), PlanError),
    (dict(channels={"lr": "cosine(peak="}), SpecError),
    (dict(channels={"lr": "nosuch(peak=1)"}), SpecError),
    (dict(channels={"lr": True}), CadenceError),
    (dict(channels={"lr": -0.1}), CadenceError),
    (dict(channels={"lr": math.nan}), CadenceError),
    (dict(unit="token", rates=Rates(samples_per_step=32)), PlanError),  # tokens per sample unknown
])
def test_bad_construction_is_one_line_cadence_error(kwargs, error):
    args = dict(channels={"lr": "cosine(peak=1)"}, horizon=100) | kwargs
    with pytest.raises(error) as e:
        Plan(args.pop("channels"), **args)
    one_line(e.value)


@pytest.mark.parametrize("horizon", [2**53 + 1, 2**53 + 2, float(2**54), 10**30, "1e16st", "1e17"])
def test_a_horizon_over_2_53_is_refused_as_over_the_limit(horizon):
    with pytest.raises(CadenceError) as e:
        Plan({"lr": "cosine(peak=1)"}, horizon=horizon)
    assert "2**53" in one_line(e.value)


def test_good_construction_forms():
    assert Plan({"lr": "cosine(peak=1)"}, horizon=2**53).horizon == 2**53
    assert Plan({"lr": 0.1}, horizon=np.int64(7)).horizon == 7
    assert Plan({"lr": 0.1}, horizon=7.0).horizon == 7
    assert Plan({"lr": 0.1}, horizon="1Ksa", unit="sa", rates=Rates(samples_per_step=3)).horizon == 1000
    assert Plan({"lr": 0.1}, horizon="1Ksa", unit="step", rates=Rates(samples_per_step=3)).horizon == 334
    assert Plan({"lr": 0.1}, horizon=None).horizon is None
    assert Plan({"loss.z": 0.5, "Lr_2": np.float64(0.1)}, horizon=3).values() == {"loss.z": 0.5, "Lr_2": 0.1}


# -- the registry ---------------------------------------------------------------------------

def test_register_refuses_to_replace_a_name_unless_asked():
    from cadence.schedules import registry
    original, kind = registry.lookup("cosine"), registry.kind_of("cosine")

    class Other(cadence.schedules.Schedule):
        name = "cosine"
        needs_total = False

        def _evaluate(self, t, ctx):
            return np.full_like(t, 0.25)

    with pytest.raises(SpecError) as e:
        cadence.schedules.register(Other)
    assert "replace=True" in one_line(e.value) and registry.lookup("cosine") is original
    assert cadence.schedules.register(original, kind="family") is original  # the same class again: fine
    try:
        assert cadence.schedules.register(Other, replace=True) is Other
        assert parse("cosine()").value_at(3) == 0.25
    finally:
        cadence.schedules.register(original, kind=kind, replace=True)
    assert registry.lookup("cosine") is original and registry.kind_of("cosine") == kind
    assert parse("cosine(peak=1)").values(10)[0] == 1.0


def test_the_controllers_are_registered_as_controllers():
    names = [cls.name for cls in cadence.schedules.entries("controller")]
    assert {"plateau", "noise_batch", "scale_with"} <= set(names)
    families = {cls.name for cls in cadence.schedules.entries("family")}
    assert "ramp" in families and not {"plateau", "noise_batch", "scale_with"} & families
    combinators = {cls.name for cls in cadence.schedules.entries("combinator")}
    assert {"warmup", "scale", "clip"} <= combinators


@pytest.mark.parametrize("spec", [
    "warmup(plateau(constant(value=1)), 10)",
    "scale(noise_batch(start=8, max=64), by=2.0)",
    "clip(scale_with(cosine(peak=1), reference=8), floor=0.1)",
    "join(cosine(peak=1), plateau(constant(value=1)), at=['50%'])",
])
def test_a_controller_inside_a_schedule_combinator_is_refused_at_parse(spec):
    with pytest.raises(CadenceError) as e:
        parse(spec)
    assert "put it outside" in one_line(e.value)
    with pytest.raises(CadenceError) as e:
        Plan({"lr": spec}, horizon=100)
    assert "'lr'" in one_line(e.value) and "put it outside" in str(e.value)


def test_controllers_may_wrap_controllers():
    plan = Plan({"lr": "plateau(scale_with(plateau(constant(value=1.0), patience=0, factor=0.5), reference=8), "
                       "monitor='acc', mode='max', patience=0, factor=0.1)", "batch": 8}, horizon=10)
    rows = run(plan, 4, lambda k: {"val_loss": 1.0, "acc": 0.5})
    assert [r["lr"] for r in rows] == [1.0, 1.0, 0.5 * 0.1, 0.25 * 0.1 * 0.1]
    assert set(plan.monitors) == {"val_loss", "acc"}


# -- the Clock ----------------------------------------------------------------------------------

def test_clock_moves_return_new_clocks():
    clock = Clock(unit=Unit.SAMPLE, horizon=100)
    nxt = clock.advanced(32, 1024)
    assert nxt is not clock and clock.counters() == {"step": 0, "samples": 0, "tokens": 0, "skipped": 0}
    assert nxt.counters() == {"step": 1, "samples": 32, "tokens": 1024, "skipped": 0} and nxt.position == 32
    skipped = nxt.skipped_one()
    assert skipped is not nxt and nxt.skipped == 0
    assert skipped.counters() == {"step": 1, "samples": 32, "tokens": 1024, "skipped": 1}
    assert skipped.position == nxt.position and skipped.unit is Unit.SAMPLE and skipped.horizon == 100
    assert not skipped.done and clock.advanced(100).done
    with pytest.raises(AttributeError):
        clock.step = 3


def test_clock_counters_round_trip():
    clock = Clock(unit=Unit.TOKEN, horizon=10**6, rates=Rates(samples_per_step=1 / 8, tokens_per_sample=8),
                  samples_per_epoch=64.0)
    for _ in range(5):
        clock = clock.advanced(64, 512).skipped_one()
    counters = json.loads(json.dumps(clock.counters()))
    fresh = Clock(unit=Unit.TOKEN, horizon=10**6, rates=clock.rates, samples_per_epoch=64.0).with_counters(counters)
    assert fresh == clock and fresh.position == 2560 and fresh.epoch == 5.0
    assert all(type(v) is int for v in clock.counters().values())


@pytest.mark.parametrize("counters", [
    None, [0, 0, 0, 0], {"step": 0, "samples": 0, "tokens": 0},
    {"step": 0, "samples": 0, "tokens": 0, "skipped": 0, "epoch": 0},
    {"step": -1, "samples": 0, "tokens": 0, "skipped": 0},
    {"step": 1.0, "samples": 0, "tokens": 0, "skipped": 0},
    {"step": 0, "samples": "0", "tokens": 0, "skipped": 0},
    {"step": 0, "samples": 0, "tokens": None, "skipped": 0},
    {"step": 0, "samples": 0, "tokens": 0, "skipped": False},
])
def test_bad_clock_counters_are_refused(counters):
    with pytest.raises(CadenceError) as e:
        Clock().with_counters(counters)
    one_line(e.value)


@pytest.mark.parametrize("kw", [dict(unit=Unit.EPOCH), dict(unit=Unit.FRACTION), dict(unit="st"), dict(step=-1),
                                dict(samples=2.0), dict(tokens=True)])
def test_bad_clocks_are_refused(kw):
    with pytest.raises(CadenceError):
        Clock(**kw)
