"""The online data-mixing controllers (odm, doremi, aioli) on a constructed problem whose answer is
known, simulated in numpy: each step the controller's weights draw a batch of 32 samples, each
domain's loss follows from how much of it has been drawn, and the controller observes what a
training loop would report (and the held-out probe when it asks for one).

The domains: ``learn`` (loss falls with the samples drawn from it), ``noise`` (about 4.5
whatever is drawn: nothing to learn) and ``quick`` (learned in a few hundred samples, then flat).
"""

import copy
import json
import math

import numpy as np
import pytest

from cadence.controllers.mixing import MIXERS, ODM, Aioli, DoReMi
from cadence.errors import ScheduleError
from cadence.time import Clock

KEYS = ("learn", "noise", "quick")
BATCH = 32


def loss(domain: str, drawn: int, rng, sd: float) -> float:
    """A domain's loss after ``drawn`` samples of it, plus noise of ``sd``."""
    base = {"learn": 1 + 3 / (1 + drawn / 200) ** 0.5, "noise": 4.5, "quick": 2.0 + 2.0 * math.exp(-drawn / 50)}
    return base[domain] + sd * rng.standard_normal()


class Uniform:
    """The reference run: uniform weights, no state."""

    probe_every = None

    def bind_keys(self, keys):
        self.keys = tuple(keys)

    def init(self):
        return None

    def value(self, state, clock, inputs=None):
        return {k: 1 / len(self.keys) for k in self.keys}

    def update(self, state, clock, signals):
        return state


class Run:
    """A plan's loop around one mixing controller, on a step clock of ``total`` steps."""

    def __init__(self, controller, total: int, keys=KEYS):
        self.c, self.keys = controller, keys
        controller.bind_keys(keys)
        self.state = controller.init()
        self.clock = Clock(horizon=total)
        self.drawn = {k: 0 for k in keys}
        self.values = []

    def steps(self, n: int, signal=lambda k, v: v):
        """``n`` steps; ``signal(name, value)`` may replace what the loop reports (None: missing)."""
        every = self.c.probe_every
        for _ in range(n):
            w = self.c.value(self.state, self.clock)
            self.values.append(w)
            rng = np.random.default_rng([7, self.clock.step])
            counts = rng.multinomial(BATCH, [w[k] for k in self.keys])
            signals = {}
            for k, c in zip(self.keys, counts):
                mean = float(np.mean([loss(k, self.drawn[k] + i, rng, 0.05) for i in range(c)])) if c else None
                self.drawn[k] += int(c)
                signals.update({f"train_loss/{k}": mean, f"samples/{k}": self.drawn[k], f"mixture/{k}": w[k]})
            signals["train_loss"] = float(np.mean([signals[f"train_loss/{k}"] for k in self.keys
                                                    if signals[f"train_loss/{k}"] is not None]))
            signals = {name: signal(name, v) for name, v in signals.items()}
            old, snapshot = self.state, copy.deepcopy(self.state)
            self.state = self.c.update(self.state, self.clock, signals)
            assert old == snapshot  # update is pure: the state it was given is as it was
            self.clock = self.clock.advanced(samples=BATCH)
            if every and self.clock.step % every == 0:  # a fixed held-out probe: almost no noise
                prng = np.random.default_rng([8, self.clock.step])
                probe = {f"probe_loss/{k}": signal(f"probe_loss/{k}", loss(k, self.drawn[k], prng, 2e-4))
                         for k in self.keys}
                self.state = self.c.update(self.state, self.clock, probe)
        return self

    def final(self) -> dict:
        return self.c.value(self.state, self.clock)


def reference_losses(total: int) -> list[float]:
    """The reference run's final loss per domain: uniform weights for the same number of steps."""
    run = Run(Uniform(), total).steps(total)
    return [loss(k, run.drawn[k], np.random.default_rng(0), 0.0) for k in KEYS]


def plain(value) -> bool:
    """Only Python's own JSON types: no numpy scalars, no NaN or infinity."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    if type(value) is float:
        return math.isfinite(value)
    return value is None or type(value) in (int, str)


def valid(weights: dict) -> None:
    assert list(weights) == list(KEYS)
    values = np.array(list(weights.values()))
    assert np.isfinite(values).all() and (values >= 0).all() and abs(values.sum() - 1) < 1e-12, weights


# -- the constructed problem --------------------------------------------------------------------------------


def test_odm_favours_the_noise_domain_because_its_reward_is_the_loss():
    """Loss as reward: the domain whose loss stays highest (noise) gets the most weight. ODM's
    weights stay close to uniform (eps_{t-1} R shrinks as t grows) but lean to noise, the
    opposite of what a learner wants here: a property of the method (see ODM's docstring)."""
    run = Run(ODM(), 1000).steps(1000)
    final = run.final()  # measured: learn 0.326, noise 0.345, quick 0.329
    assert final["noise"] == max(final.values()) and final["noise"] > 1 / 3 + 0.005
    assert max(final.values()) < 0.4  # near uniform, as eps_t -> 0
    assert run.drawn["noise"] == max(run.drawn.values())
    mean = {k: np.mean([v[k] for v in run.values[100:]]) for k in KEYS}
    assert mean["noise"] > mean["learn"] and mean["noise"] > mean["quick"]


def test_doremi_averaged_weights_keep_the_noise_domain_well_below_uniform():
    total = 1000
    ref = reference_losses(total)  # learn 1.41, noise 4.5, quick 2.0
    run = Run(DoReMi(reference_loss=ref), total).steps(total)
    average = run.c.averaged_weights(run.state)  # measured: learn 0.74, noise 0.13, quick 0.13
    valid(average)
    assert average["noise"] < 0.2 and average["learn"] > 0.6
    assert run.c.diagnose(run.state) == {f"average/{k}": v for k, v in average.items()}
    assert run.drawn["learn"] > 2 * run.drawn["noise"]
    assert run.drawn["noise"] < 0.6 * total * BATCH / 3  # uniform would draw a third
    # the clip turns a noisy per-batch loss into excess: without smoothing (beta=0, the paper's
    # per-batch clip) noise gets more of the average weight
    raw = Run(DoReMi(reference_loss=ref, beta=0), total).steps(total)
    assert raw.c.averaged_weights(raw.state)["noise"] > average["noise"] + 0.03


def test_doremi_follow_prior_samples_by_the_prior_and_still_learns_the_weights():
    ref = reference_losses(300)
    run = Run(DoReMi(reference_loss=ref, prior=[2, 1, 1], follow="prior"), 300).steps(300)
    assert all(v == {"learn": 0.5, "noise": 0.25, "quick": 0.25} for v in run.values)
    average = run.c.averaged_weights(run.state)
    assert average["learn"] > 0.5 and average["noise"] < 0.25
    follow = Run(DoReMi(reference_loss=ref, follow="average"), 50).steps(50)
    assert follow.final() == follow.c.averaged_weights(follow.state) != follow.c._dict(follow.state["weights"])
    assert follow.values[0] == {k: 1 / 3 for k in KEYS} != follow.values[-1]


def test_aioli_moves_weight_from_the_noise_domain_to_the_learnable_one():
    total = 2000  # the paper's defaults (20 rounds, 4 sweeps) need rounds of 100 steps for 3 domains
    run = Run(Aioli(), total).steps(total)
    final = run.final()  # measured: learn 0.59, noise 0.22, quick 0.19
    assert run.state["rounds_done"] == 20
    assert final["noise"] < 0.25 and final["learn"] > 0.5
    assert run.drawn["learn"] > 1.3 * run.drawn["noise"]


def test_aioli_sweeps_are_perturbed_mixtures_that_change_only_where_the_probe_falls():
    ctl = Aioli(rounds=5, sweeps=2, probe_every=3, eta=0.5)
    run = Run(ctl, 600).steps(600)
    r_len, seg, learn = ctl._layout(run.clock.context)
    assert r_len % 3 == 0 and seg % 3 == 0 and learn == 2 * 3 * seg < r_len
    perturbed = [dict(zip(KEYS, row)) for row in ctl._mixtures().tolist()]
    for s, w in enumerate(run.values):
        valid(w)
        if s % r_len < learn:
            assert any(all(abs(w[k] - p[k]) < 1e-12 for k in KEYS) for p in perturbed), (s, w)
        if s and w != run.values[s - 1]:
            assert s % 3 == 0, s
    # each sweep trains once on each domain's mixture
    for round_ in range(5):
        for sweep in range(2):
            start = round_ * r_len + sweep * 3 * seg
            seen = {max(run.values[start + j * seg], key=run.values[start + j * seg].get) for j in range(3)}
            assert seen == set(KEYS)


# -- determinism and resume ---------------------------------------------------------------------------------

CONTROLLERS = {
    "odm": lambda: ODM(),
    "odm-weight": lambda: ODM(importance="weight", warmup=20),
    "doremi": lambda: DoReMi(reference_loss=[1.7, 4.5, 2.0], every=3),
    "aioli": lambda: Aioli(rounds=5, sweeps=2, probe_every=2),
}


@pytest.mark.parametrize("name", CONTROLLERS)
def test_a_run_resumed_from_json_gives_exactly_the_same_values(name):
    straight = Run(CONTROLLERS[name](), 300).steps(300)
    first = Run(CONTROLLERS[name](), 300).steps(150)
    saved = json.dumps({"state": first.state, "clock": first.clock.counters(), "drawn": first.drawn},
                       allow_nan=False)  # plain data, no NaN or infinity
    loaded = json.loads(saved)
    second = Run(CONTROLLERS[name](), 300)  # a fresh controller, as after a restart
    assert second.c.check_state(loaded["state"]) is None
    second.state, second.drawn = loaded["state"], loaded["drawn"]
    second.clock = second.clock.with_counters(loaded["clock"])
    second.steps(150)
    assert first.values + second.values == straight.values
    assert second.state == straight.state
    assert plain(straight.state) and all(plain(v) for v in straight.values)
    assert len({json.dumps(v) for v in straight.values}) > 3  # it did move


@pytest.mark.parametrize("name", CONTROLLERS)
def test_the_value_at_a_step_does_not_depend_on_how_often_it_is_asked(name):
    run = Run(CONTROLLERS[name](), 300).steps(120)
    asked = [run.c.value(run.state, run.clock) for _ in range(5)]
    assert all(a == asked[0] for a in asked)


# -- weights stay weights ------------------------------------------------------------------------------------

BAD = [math.nan, math.inf, -math.inf, None, "4.2", True, 10**400]


@pytest.mark.parametrize("name", CONTROLLERS)
def test_weights_stay_valid_with_missing_and_non_finite_signals(name):
    rng = np.random.default_rng(3)

    def spoil(signal, value):
        return BAD[rng.integers(len(BAD))] if rng.random() < 0.4 else value

    run = Run(CONTROLLERS[name](), 300).steps(300, spoil)
    for w in run.values:
        valid(w)
    assert run.c.check_state(json.loads(json.dumps(run.state, allow_nan=False))) is None


@pytest.mark.parametrize("name", CONTROLLERS)
def test_non_finite_signals_are_ignored_like_missing_ones(name):
    a = Run(CONTROLLERS[name](), 300).steps(60)
    b = Run(CONTROLLERS[name](), 300).steps(60)
    bad = {f"{p}/{k}": math.nan for p in ("train_loss", "probe_loss") for k in KEYS}
    assert a.c.update(a.state, a.clock, bad) == b.c.update(b.state, b.clock, {f"probe_loss/{k}": None for k in KEYS})
    train = {k: v for k, v in bad.items() if k.startswith("train")}
    missing = {k: None for k in train}
    assert a.c.update(a.state, a.clock, train) == a.c.update(a.state, a.clock, missing)
    if name.startswith("odm"):  # nothing observed, nothing learned
        assert a.c.update(a.state, a.clock, train) == a.state


def test_huge_losses_keep_the_weights_finite():
    for ctl in (ODM(), DoReMi(reference_loss=[0.0, 0.0, 0.0], eta=100.0, beta=0)):
        run = Run(ctl, 100).steps(100, lambda k, v: 1e300 if k == "train_loss/noise" and v is not None else v)
        for w in run.values:
            valid(w)


# -- parameters and states -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs, words", [
    (ODM, {"alpha": 1.0}, "alpha must be < 1"),
    (ODM, {"alpha": -0.1}, "alpha must be >= 0"),
    (ODM, {"alpha": "0.9"}, "alpha must be a number"),
    (ODM, {"warmup": 2.5}, "warmup must be a whole number"),
    (ODM, {"warmup": -1}, "warmup must be a whole number >= 0"),
    (ODM, {"importance": "probability"}, "importance must be one of 'none', 'weight'"),
    (DoReMi, {"eta": 0}, "eta must be > 0"),
    (DoReMi, {"eta": math.nan}, "eta must be finite"),
    (DoReMi, {"smoothing": 1.5}, "smoothing must be <= 1"),
    (DoReMi, {"every": 0}, "every must be a whole number >= 1"),
    (DoReMi, {"beta": 1}, "beta must be < 1"),
    (DoReMi, {"prior": [0, 0, 0]}, "prior must have at least one weight > 0"),
    (DoReMi, {"prior": [1, -1, 1]}, "prior[1] must be >= 0"),
    (DoReMi, {"prior": "uniform"}, "prior must be a list of numbers"),
    (DoReMi, {"reference_loss": [1.0, math.inf, 2.0]}, "reference_loss[1] must be finite"),
    (DoReMi, {"reference_loss": []}, "reference_loss must be a list of numbers"),
    (DoReMi, {"reference": ""}, "reference must be the path of a finished reference run"),
    (DoReMi, {"follow": "online"}, "follow must be one of 'current', 'average', 'prior'"),
    (Aioli, {"rounds": 0}, "rounds must be a whole number >= 1"),
    (Aioli, {"delta": 1.0}, "delta must be < 1"),
    (Aioli, {"eps": 1.0}, "eps must be < 1"),
    (Aioli, {"eta": -0.2}, "eta must be > 0"),
    (Aioli, {"sweeps": True}, "sweeps must be a whole number"),
    (Aioli, {"probe_every": 0}, "probe_every must be a whole number >= 1"),
    (Aioli, {"prior": [1, 0, 1]}, "every prior weight must be > 0"),
    (Aioli, {"seed": -1}, "seed must be a whole number >= 0"),
])
def test_bad_parameters_are_refused_in_one_line(cls, kwargs, words):
    with pytest.raises(ScheduleError) as e:
        cls(**kwargs)
    assert words in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith(cls.name + ":")


def test_per_domain_lists_must_match_the_domains():
    for ctl, words in ((DoReMi(reference_loss=[1.0, 2.0]), "reference_loss has 2 entries; the run has 3 domains"),
                       (DoReMi(reference_loss=[1, 2, 3], prior=[1, 1]), "prior has 2 entries"),
                       (Aioli(prior=[1, 1, 1, 1]), "prior has 4 entries")):
        with pytest.raises(ScheduleError, match=words) as e:
            ctl.bind_keys(KEYS)
        assert "\n" not in str(e.value)
    with pytest.raises(ScheduleError, match="two or more distinct names"):
        ODM().bind_keys(["only"])


def test_doremi_without_reference_losses_says_what_it_needs():
    ctl = DoReMi(reference="runs/uniform")
    ctl.bind_keys(KEYS)
    with pytest.raises(ScheduleError, match="needs a reference run's final per-domain losses") as e:
        ctl.init()
    assert "\n" not in str(e.value)


def test_aioli_needs_the_horizon_and_rounds_long_enough_for_its_sweeps():
    ctl = Aioli()
    ctl.bind_keys(KEYS)
    assert ctl.needs_total and ctl.probe_every == 4
    with pytest.raises(ScheduleError, match="a round of 48 steps .* cannot hold its 4 sweeps x 3 mixtures x 4 steps"):
        ctl.bind(1000)
    ctl.bind(2000)
    with pytest.raises(ScheduleError, match="needs the run's length"):
        ctl.value(ctl.init(), Clock())


def test_monitors_spec_and_registry_list():
    assert MIXERS == (ODM, DoReMi, Aioli)
    assert [c.name for c in MIXERS] == ["odm", "doremi", "aioli"]
    for ctl, signal in ((ODM(), "train_loss"), (DoReMi(reference_loss=[1, 2, 3]), "train_loss"),
                        (Aioli(), "probe_loss")):
        ctl.bind_keys(KEYS)
        assert ctl.monitors == tuple(f"{signal}/{k}" for k in KEYS)
        assert ctl.vector and ctl.stateful and ctl.formula and ctl.source
        assert ctl.start_value(ctl.init()) == {k: 1 / 3 for k in KEYS}
    assert ODM(alpha=0.8).spec() == "odm(alpha=0.8, warmup=0, importance='none')"
    assert DoReMi(reference="runs/u", eta=0.5).spec().startswith("doremi(reference='runs/u', reference_loss=None, eta=0.5")
    assert ODM().probe_every is None and DoReMi().probe_every is None


def _states():
    odm, doremi, aioli = ODM(), DoReMi(reference_loss=[1, 2, 3]), Aioli(rounds=5, sweeps=2, probe_every=2)
    for c in (odm, doremi, aioli):
        c.bind_keys(KEYS)
    return odm, doremi, aioli


@pytest.mark.parametrize("spoil, words", [
    (lambda s: {**s, "reward": [0.0, 1.0]}, "reward must be a list of 3 numbers"),
    (lambda s: {**s, "reward": [0.0, math.nan, 1.0]}, "reward must hold finite numbers"),
    (lambda s: {**s, "reward": [0.0, "1", 1.0]}, "reward must hold finite numbers"),
    (lambda s: {"reward": s["reward"], "extra": 1}, "an odm state is an object with 'reward'"),
    (lambda s: [0, 0, 0], "an odm state is an object"),
])
def test_odm_check_state_names_what_is_wrong(spoil, words):
    odm, _, _ = _states()
    assert odm.check_state(odm.init()) is None
    assert words in odm.check_state(spoil(odm.init()))


@pytest.mark.parametrize("spoil, words", [
    (lambda s: {**s, "weights": [0.5, 0.5]}, "weights must be a list of 3 numbers"),
    (lambda s: {**s, "weights": [1.2, -0.1, -0.1]}, "weights must hold weights from 0 to 1"),
    (lambda s: {**s, "average": [0.5, 0.5, 0.5]}, "average must sum to 1"),
    (lambda s: {**s, "weights": [math.inf, 0, 0]}, "weights must hold finite numbers"),
    (lambda s: {**s, "loss": [1.0, None]}, "loss must be a list of 3 numbers"),
    (lambda s: {**s, "updates": -1}, "updates must be a whole number >= 0"),
    (lambda s: {**s, "updates": 1.5}, "updates must be a whole number >= 0"),
    (lambda s: {k: v for k, v in s.items() if k != "loss"}, "a doremi state is an object with"),
])
def test_doremi_check_state_names_what_is_wrong(spoil, words):
    _, doremi, _ = _states()
    assert doremi.check_state(doremi.init()) is None
    assert words in doremi.check_state(spoil(doremi.init()))


@pytest.mark.parametrize("spoil, words", [
    (lambda s: {**s, "weights": [0.5, 0.5]}, "weights must be a list of 3 numbers"),
    (lambda s: {**s, "weights": [1.0, 0.0, 0.0]}, "weights must be > 0"),
    (lambda s: {**s, "weights": [0.6, 0.6, -0.2]}, "weights must hold weights from 0 to 1"),
    (lambda s: {**s, "rounds_done": 6}, "rounds_done is at most rounds=5"),
    (lambda s: {**s, "last": {"step": 4, "loss": [1.0, 2.0]}}, "last: loss must be a list of 3 numbers"),
    (lambda s: {**s, "last": {"step": -4, "loss": [1.0, 2.0, 3.0]}}, "last: step must be a whole number >= 0"),
    (lambda s: {**s, "drops": [[0.0] * 3] * 2}, "drops must be a 3 x 3 list"),
    (lambda s: {**s, "drops": [[0.0, math.nan, 0.0]] * 3}, "drops must hold finite numbers"),
    (lambda s: {**s, "counts": [[0, -1, 0]] * 3}, "counts must hold whole numbers >= 0"),
])
def test_aioli_check_state_names_what_is_wrong(spoil, words):
    _, _, aioli = _states()
    assert aioli.check_state(aioli.init()) is None
    assert aioli.check_state({**aioli.init(), "last": {"step": 4, "loss": [1.0, None, 3.0]}}) is None
    assert words in aioli.check_state(spoil(aioli.init()))
