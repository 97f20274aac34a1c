"""Guards (cadence.guards) on their own and through a Plan."""

import json
import math

import numpy as np
import pytest

from cadence import Plan
from cadence.errors import CadenceError, PlanError, TrainingDiverged
from cadence.guards import LossSpike, Rollback
from cadence.plan import read_plan_file


def reference_decisions(values, window, sigma, min_history):
    """The rule written out with numpy: a value is skipped when non-finite or above mean + sigma*std
    (ddof=1) of the last `window` applied values, once `min_history` are known."""
    kept, out = [], []
    for v in values:
        recent = kept[-window:]
        if not math.isfinite(v):
            skip = True
        elif len(recent) < min_history:
            skip = False
        else:
            skip = v - np.mean(recent) > sigma * np.std(recent, ddof=1)
        out.append(bool(skip))
        if not skip:
            kept.append(v)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_loss_spike_follows_the_written_rule(seed):
    rng = np.random.default_rng(seed)
    n = 400
    values = list(3.0 * np.exp(-np.arange(n) / 200) + 0.05 * rng.standard_normal(n))
    for at in rng.choice(np.arange(50, n), size=8, replace=False):
        values[at] += rng.uniform(0.1, 2.0)
    window, sigma, min_history = int(rng.integers(8, 64)), float(rng.uniform(2, 6)), 0
    min_history = int(rng.integers(2, window + 1))
    guard = LossSpike(window=window, sigma=sigma, min_history=min_history, max_in_a_row=n)
    got = [guard.observe(v) for v in values]
    assert got == reference_decisions(values, window, sigma, min_history)
    assert guard.state["skipped"] == sum(got)


def test_obvious_spikes_are_caught_and_clean_noise_is_not():
    rng = np.random.default_rng(1)
    values = 2.0 + 0.02 * rng.standard_normal(600)
    spikes = [150, 300, 301, 450]
    for at in spikes:
        values[at] += 1.0
    guard = LossSpike()  # the defaults: window 128, 6 sigma, 64 values first
    skipped = [i for i, v in enumerate(values) if guard.observe(float(v))]
    assert skipped == spikes


def test_one_sided_and_patient():
    guard = LossSpike(window=8, min_history=4, sigma=1.0)
    assert [guard.observe(v) for v in (5.0, 100.0, 5.0)] == [False, False, False]  # no judgement before 4 values
    assert guard.observe(-1000.0) is False  # a drop is never a spike
    assert guard.observe(float("nan")) is True and guard.observe(float("inf")) is True
    assert guard.observe(None) is False  # not measured: applied, nothing recorded


def test_skipped_values_do_not_widen_the_band():
    guard = LossSpike(window=16, min_history=4, sigma=3.0, max_in_a_row=100)
    for v in (1.0, 1.01, 0.99, 1.0, 1.02, 0.98):
        assert not guard.observe(v)
    band = guard.band(guard.state)
    assert guard.observe(50.0)
    assert guard.band(guard.state) == band
    assert guard.observe(5.0)  # still judged against the clean window


def test_too_many_in_a_row_is_a_divergence():
    guard = LossSpike(window=8, min_history=4, sigma=2.0, max_in_a_row=3)
    for v in (1.0, 1.1, 0.9, 1.0):
        guard.observe(v)
    for _ in range(3):
        assert guard.observe(10.0)
    with pytest.raises(TrainingDiverged, match="4 steps in a row.*max_in_a_row=3"):
        guard.observe(10.0)
    assert TrainingDiverged.exit_code == 3


def test_state_round_trips_through_json_and_resumes_exactly():
    rng = np.random.default_rng(4)
    values = list(1.0 + 0.1 * rng.standard_normal(300))
    for at in (100, 200, 250):
        values[at] += 3
    whole = LossSpike(window=32, min_history=16)
    expected = [whole.observe(v) for v in values]
    first = LossSpike(window=32, min_history=16)
    got = [first.observe(v) for v in values[:170]]
    saved = json.loads(json.dumps(first.state_dict()))
    second = LossSpike(window=32, min_history=16)
    second.load_state_dict(saved)
    got += [second.observe(v) for v in values[170:]]
    assert got == expected and second.state == whole.state
    with pytest.raises(CadenceError, match="settings"):
        LossSpike(window=33, min_history=16).load_state_dict(saved)
    broken = json.loads(json.dumps(saved))
    broken["state"]["history"] = ["x"]
    with pytest.raises(CadenceError, match="history"):
        second.load_state_dict(broken)


@pytest.mark.parametrize("kwargs, field", [
    ({"window": 1}, "window"), ({"window": 2**17}, "window"), ({"sigma": 0}, "sigma"),
    ({"sigma": float("nan")}, "sigma"), ({"min_history": 1}, "min_history"),
    ({"window": 8, "min_history": 9}, "min_history"), ({"max_in_a_row": 0}, "max_in_a_row"), ({"signal": ""}, "signal"),
])
def test_bad_settings_are_refused(kwargs, field):
    with pytest.raises(CadenceError) as e:
        LossSpike(**kwargs)
    assert e.value.field == field and "\n" not in str(e.value)


def test_rollback_counts_skips_within_a_span():
    r = Rollback(spikes=2, within=5)
    assert [r.observe(a, s) for a, s in [(0, True), (1, False), (6, True), (7, True)]] == [False, False, False, True]
    assert r.state == {"recent": []}
    with pytest.raises(CadenceError, match="spikes"):
        Rollback(spikes=6, within=5)


def guarded_plan(**guards):
    return Plan({"lr": "cosine(peak=1e-3)"}, horizon=100, guards=guards or {"loss_spike": {"window": 16, "min_history": 8}})


def drive(plan, losses):
    verdicts = []
    for loss in losses:
        before = plan.clock
        verdict = plan.guard({"train_loss": loss, "grad_norm": 1.0})
        verdicts.append(verdict)
        if verdict == "apply":
            plan.observe({"train_loss": loss})
            plan.advance()
        else:
            values = plan.values()
            plan.skip()
            assert plan.values() == values and plan.clock.step == before.step  # a skipped step moves only `skipped`
    return verdicts


def test_a_plan_guards_its_steps_and_counts_skips():
    plan = guarded_plan()
    losses = [2.0 + 0.01 * (i % 3) for i in range(30)]
    losses[20] = 9.0
    verdicts = drive(plan, losses)
    assert verdicts.count("skip") == 1 and verdicts[20] == "skip"
    assert (plan.clock.step, plan.clock.skipped) == (29, 1)
    assert plan.diagnose() == {"loss_spike.skipped": 1} and plan.diagnostics == ["loss_spike.skipped"]
    assert Plan({"lr": 0.1}).guard({"train_loss": float("nan")}) == "apply"  # no guards: nothing judged


def test_rollback_verdict_and_resume_of_guard_state():
    plan = guarded_plan(loss_spike={"window": 16, "min_history": 8}, rollback={"spikes": 2, "within": 10})
    losses = [2.0 + 0.01 * (i % 3) for i in range(40)]
    losses[20] = losses[24] = 9.0
    losses[35] = 9.0
    head = drive(plan, losses[:22])
    state = json.loads(json.dumps(plan.state_dict()))
    other = guarded_plan(loss_spike={"window": 16, "min_history": 8}, rollback={"spikes": 2, "within": 10})
    other.load_state_dict(state)
    tail = drive(other, losses[22:])
    assert head[20] == "skip" and tail[24 - 22] == "rollback" and tail[35 - 22] == "skip"
    for wrong in ({"loss_spike": {"window": 16, "min_history": 9}}, None):
        with pytest.raises(PlanError, match="other guards"):
            Plan({"lr": "cosine(peak=1e-3)"}, horizon=100, guards=wrong).load_state_dict(state)


def test_guard_spellings_are_refused_in_one_line():
    with pytest.raises(PlanError, match="did you mean 'loss_spike'"):
        guarded_plan(loss_spikes={})
    with pytest.raises(PlanError, match="did you mean 'sigma'"):
        guarded_plan(loss_spike={"sigmas": 3})
    with pytest.raises(PlanError, match="add loss_spike or grad_spike"):
        guarded_plan(rollback={})
    with pytest.raises(PlanError, match="guard 'grad_spike': window"):
        guarded_plan(grad_spike={"window": 0})


def test_grad_spike_reads_the_gradient_norm():
    plan = guarded_plan(grad_spike={"window": 8, "min_history": 4, "sigma": 3})
    for g in (1.0, 1.1, 0.9, 1.0, 1.05):
        assert plan.guard({"train_loss": 100.0, "grad_norm": g}) == "apply"
        plan.advance()
    assert plan.guard({"train_loss": 1.0, "grad_norm": 50.0}) == "skip"


def test_plan_files_hold_guards(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("channels: {lr: 'cosine(peak=1e-3)'}\nhorizon: 50\nguards: {loss_spike: {sigma: 5}}\n")
    data = read_plan_file(path)
    plan = Plan(data["channels"], data["horizon"], guards=data["guards"])
    assert plan.guards["loss_spike"].sigma == 5.0
    path.write_text("channels: {lr: 0.1}\nguards: {loss_spike: {sigma: -1}}\n")
    with pytest.raises(PlanError, match="sigma must be a finite number > 0"):
        read_plan_file(path)


# -- properties (hypothesis) --------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_ANY = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=8), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(),
                                                                                         max_size=2))
_KEYS = st.sampled_from(["window", "sigma", "min_history", "signal", "max_in_a_row", "spikes", "within", "max_rollbacks",
                         "sigmaa", ""])
_NAMES = st.sampled_from(["loss_spike", "grad_spike", "rollback", "loss", 3, None])


@settings(max_examples=300, deadline=None)
@given(st.one_of(_ANY, st.dictionaries(_NAMES, st.one_of(_ANY, st.dictionaries(_KEYS, _ANY, max_size=4)), max_size=3)))
def test_any_guards_mapping_builds_or_is_refused_in_one_line(guards):
    try:
        plan = Plan({"lr": 0.1}, horizon=10, guards=guards)
    except CadenceError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
        return
    json.dumps(plan.state_dict())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32),
                          st.integers(-10**30, 10**30)), max_size=80),
       st.integers(2, 12), st.floats(0.1, 8), st.integers(0, 80))
def test_guard_decisions_resume_exactly_from_any_point(values, window, sigma, cut):
    def fresh():
        return LossSpike(window=window, sigma=sigma, min_history=2, max_in_a_row=10**6)

    whole = fresh()
    expected = [whole.observe(v) for v in values]
    first = fresh()
    got = [first.observe(v) for v in values[:cut]]
    second = fresh()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    got += [second.observe(v) for v in values[cut:]]
    assert got == expected and second.state == whole.state
    assert all(skip for v, skip in zip(values, expected) if v is not None and not math.isfinite(float(v)))
