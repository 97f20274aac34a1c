"""reweight(): Sow et al.'s loss-based sample weights against hand-computed values, the burn-in
schedule, and the batches a training loop really meets (one sample, equal losses, NaN, inf)."""

import math

import numpy as np
import pytest

from cadence.controllers.reweight import Reweight
from cadence.errors import CadenceError, ScheduleError

E = math.exp
LOSSES = [1.0, 2.0, 3.0, 5.0]  # mapped onto [-1, 1]: h = -1, -0.5, 0, 1


def _mean_one(e):
    return [4 * x / sum(e) for x in e]


@pytest.mark.parametrize("strategy, expected", [
    # g = min(h + 1, 1) = 0, 0.5, 1, 1: the lowest loss down, the two highest capped at the same weight
    ("linupper", _mean_one([E(-1), E(-0.5), 1, 1])),
    # g = 1 - h^2 = 0, 0.75, 1, 0: the middle up, both extremes down
    ("quadratic", _mean_one([E(-1), E(-0.25), 1, E(-1)])),
    # g = |h| = 1, 0.5, 0, 1: both extremes up
    ("extremes", _mean_one([1, E(-0.5), E(-1), 1])),
])
def test_each_strategy_by_hand(strategy, expected):
    w = Reweight(strategy=strategy).weights(np.array(LOSSES), 1.0)
    assert w == pytest.approx(expected, rel=1e-12)
    assert w.mean() == pytest.approx(1.0, rel=1e-12)


def test_linupper_numbers_and_temperature():
    w = Reweight().weights(LOSSES, 1.0)
    assert w == pytest.approx([0.4947, 0.8157, 1.3448, 1.3448], abs=1e-4)
    sharper = Reweight(temperature=0.5).weights(LOSSES, 1.0)  # exp((g - 1) / 0.5)
    assert sharper == pytest.approx(_mean_one([E(-2), E(-1), 1, 1]), rel=1e-12)
    assert sharper[0] < w[0]


def test_strength_blends_with_uniform():
    full = Reweight().weights(LOSSES, 1.0)
    half = Reweight().weights(LOSSES, 0.5)
    assert half == pytest.approx(1 + 0.5 * (full - 1), rel=1e-12)
    assert np.array_equal(Reweight().weights(LOSSES, 0.0), np.ones(4))


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes"])
def test_weights_average_one_on_random_batches(strategy):
    rng = np.random.default_rng(0)
    rw = Reweight(strategy=strategy)
    for size in (2, 3, 17, 256):
        for s in (0.3, 1.0):
            w = rw.weights(rng.gamma(2.0, 1.5, size), s)
            assert w.shape == (size,) and np.all(w > 0) and w.mean() == pytest.approx(1.0, rel=1e-12)


def test_batches_a_loop_meets():
    rw = Reweight()
    assert np.array_equal(rw.weights([2.5], 1.0), [1.0])
    assert np.array_equal(rw.weights([], 1.0), np.ones(0))
    assert rw.weights([1.7] * 8, 1.0) == pytest.approx(np.ones(8), rel=1e-15)
    # spreads below the paper's 1e-6 floor give weights near uniform, not a blow-up
    assert rw.weights([1.0, 1.0 + 1e-8, 1.0 + 2e-8], 1.0) == pytest.approx(np.ones(3), abs=0.02)
    # non-finite losses get weight 0; the rest are weighed among themselves and the batch still averages 1
    w = rw.weights([1.0, math.nan, 3.0, math.inf, 5.0], 1.0)
    e = [E(-1), 1, 1]  # h = -1, 0, 1 over the finite losses
    assert w == pytest.approx([5 * e[0] / sum(e), 0, 5 * e[1] / sum(e), 0, 5 * e[2] / sum(e)], rel=1e-12)
    assert w.mean() == pytest.approx(1.0)
    assert np.array_equal(rw.weights([1.0, -math.inf, 3.0], 0.0), [1.5, 0.0, 1.5])
    assert np.array_equal(rw.weights([math.nan, math.inf], 1.0), [1.0, 1.0])
    # losses at the edge of float64 do not overflow the mapping
    assert np.all(np.isfinite(rw.weights([-1.7e308, 0.0, 1.7e308], 1.0)))


def test_burn_in_is_honoured():
    v = Reweight(burn_in="10%").values(100)
    assert np.all(v[:10] == 0.0) and np.all(v[10:] == 1.0)
    r = Reweight(burn_in=10, ramp=10).values(100)
    assert r[10] == 0.0 and r[15] == pytest.approx(0.5) and np.all(r[20:] == 1.0) and np.all(r[:10] == 0.0)
    assert np.all(np.diff(r) >= 0)


@pytest.mark.parametrize("make, message", [
    (lambda: Reweight(strategy="cubic"), "strategy must be one of 'linupper', 'quadratic', 'extremes'"),
    (lambda: Reweight(temperature=0), "temperature must be > 0"),
    (lambda: Reweight(burn_in="2x"), "burn_in"),
    (lambda: Reweight(burn_in=100).values(100), "burn_in=100 steps is not shorter than the run"),
    (lambda: Reweight(burn_in=60, ramp=50).values(100), "longer than the run"),
    (lambda: Reweight().weights([1.0, 2.0], 1.5), "strength must be <= 1"),
    (lambda: Reweight().weights([[1.0, 2.0]], 1.0), "1-D array"),
    (lambda: Reweight().weights(["a"], 1.0), "1-D array of numbers"),
])
def test_bad_input_is_one_clear_error(make, message):
    with pytest.raises(CadenceError, match=message):
        make()
    assert issubclass(ScheduleError, CadenceError)
