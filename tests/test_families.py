"""Reference values: each family against an independent scalar implementation of its formula."""

import math

import numpy as np
import pytest

from cadence import schedules as S
from cadence.errors import ScheduleError
from cadence.time import Rates

T = 50


def ref_warmup(i, w, peak, body):
    return peak * (i / w) if i < w else body


def p_of(i, w, total):
    return min(max((i - w) / (total - w), 0.0), 1.0)


def close(values, expected):
    np.testing.assert_allclose(values, np.array(expected), rtol=1e-13, atol=1e-15)


def test_linear():
    v = S.linear(peak=2.0, final=0.5, warmup=10).values(T)
    close(v, [ref_warmup(i, 10, 2.0, 0.5 + 1.5 * (1 - p_of(i, 10, T))) for i in range(T)])
    assert v[10] == 2.0 and v[5] == 1.0


def test_cosine():
    v = S.cosine(peak=1.0, final=0.1, warmup=5).values(T)
    close(v, [ref_warmup(i, 5, 1.0, 0.1 + 0.9 * (1 + math.cos(math.pi * p_of(i, 5, T))) / 2) for i in range(T)])


def test_rex():
    def rex(p):
        return 0.0 + 1.0 * (1 - p) / (1 - p / 2)
    close(S.rex(peak=1.0).values(T), [rex(i / T) for i in range(T)])


def test_polynomial():
    close(S.polynomial(peak=1.0, final=0.2, power=3.0).values(T), [0.2 + 0.8 * (1 - i / T) ** 3 for i in range(T)])


def test_constant():
    close(S.constant(value=0.3, warmup=4).values(T), [ref_warmup(i, 4, 0.3, 0.3) for i in range(T)])


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt", "exp"])
def test_wsd_shapes(shape):
    peak, final, w, d = 3e-4, 3e-6, 5, 10
    start = T - d

    def body(i):
        if i < start:
            return peak
        p = (i - start) / d
        return {
            "linear": final + (peak - final) * (1 - p),
            "cosine": final + (peak - final) * (1 + math.cos(math.pi * p)) / 2,
            "1-sqrt": final + (peak - final) * (1 - math.sqrt(p)),
            "exp": peak * (final / peak) ** p,
        }[shape]

    v = S.wsd(peak=peak, warmup=w, decay=d, final=final, shape=shape).values(T)
    close(v, [ref_warmup(i, w, peak, body(i)) for i in range(T)])
    assert v[start - 1] == peak and v[start] == peak and v[start + 1] < peak


def test_wsd_fraction_is_of_the_whole_run():
    v = S.wsd(peak=1.0, warmup=10, decay="20%").values(100)
    assert v[79] == 1.0 and v[80] == 1.0 and v[81] < 1.0


def test_step_and_multistep():
    close(S.step(peak=1.0, every=7, factor=0.5).values(T), [0.5 ** (i // 7) for i in range(T)])
    close(S.multistep(peak=1.0, milestones=[10, "50%"], factor=0.1).values(T),
          [0.1 ** ((i >= 10) + (i >= 25)) for i in range(T)])


def test_exponential_forms():
    close(S.exponential(peak=1.0, factor=0.9).values(T), [0.9 ** i for i in range(T)])
    close(S.exponential(peak=1.0, final=0.01).values(T), [0.01 ** (i / T) for i in range(T)])


def test_sgdr_restarts():
    v = S.sgdr(peak=1.0, period=5, mult=2, final=0.0).values(40)
    starts = [0, 5, 15, 35]
    for k, s in enumerate(starts):
        assert v[s] == 1.0, (k, s)
    assert v[4] == pytest.approx((1 + math.cos(math.pi * 4 / 5)) / 2)
    assert v[14] == pytest.approx((1 + math.cos(math.pi * 9 / 10)) / 2)


def test_inverse_sqrt_matches_transformers_formula():
    # transformers get_inverse_sqrt_schedule: 1/sqrt((step + shift)/timescale), shift = timescale - warmup.
    w = 10
    expected = [i / w if i < w else 1 / math.sqrt((i + (w - w)) / w) for i in range(T)]
    close(S.inverse_sqrt(peak=1.0, warmup=w).values(T), expected)


def test_power_in_tokens():
    rates = Rates(samples_per_step=4, tokens_per_sample=32)
    s = S.power(peak=0.02, a=0.5, b=-0.51, warmup=5, decay=10, final=0.0)
    v = s.values(T, rates)
    stable = [0.02] + [min(0.02, 0.5 * (i * 128) ** -0.51) for i in range(1, T)]
    assert stable[5] < 0.02 and stable[39] < stable[5]  # the power law, not the cap, is in force
    assert v[4] == pytest.approx(stable[5] * 4 / 5)
    close(v[5:40], stable[5:40])
    assert v[40] == pytest.approx(stable[40]) and v[-1] == pytest.approx(stable[40] * (1 - 9 / 10))
    with pytest.raises(ScheduleError, match="tokens"):
        s.values(T)  # no rates: n cannot be counted in tokens


def test_infinite_phases():
    s = S.infinite(peak=1.0, constant=0.25, final=0.05, warmup=5, cooldown=10, anneal=10)
    v = s.values(T)
    assert v[5] == 1.0 and v[15] == 0.25 and v[39] == 0.25
    assert v[10] == pytest.approx(0.25 + 0.75 * (1 + math.cos(math.pi * 0.5)) / 2)
    assert v[45] == pytest.approx(0.05 + 0.2 * 0.5)


def test_cyclic_triangle():
    v = S.cyclic(low=0.0, peak=1.0, up=4).values(16)
    close(v[:9], [0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0])


def test_onecycle_ends_on_final():
    s = S.onecycle(peak=1.0, warmup="30%")
    v = s.values(100)
    assert v[0] == pytest.approx(1 / 25) and v[29] == pytest.approx(1.0) and v[-1] == pytest.approx(1 / 25 / 1e4)


@pytest.mark.parametrize(
    "factory, kwargs, fragment",
    [
        (S.cosine, {"peak": -1.0}, "peak must be >= 0"),
        (S.cosine, {"peak": float("nan")}, "peak must be finite"),
        (S.linear, {"final": float("inf")}, "final must be finite"),
        (S.cosine, {"peak": "big"}, "peak must be a number"),
        (S.wsd, {"shape": "sqrt"}, "shape must be one of"),
        (S.wsd, {"shape": "exp", "final": 0.0}, "final > 0"),
        (S.exponential, {"peak": 1.0}, "exactly one of factor"),
        (S.multistep, {"milestones": []}, "non-empty list"),
        (S.polynomial, {"power": 0}, "power must be > 0"),
        (S.sgdr, {"mult": 0.5}, "mult must be >= 1"),
        (S.cosine, {"warmup": "3parsecs"}, "cosine: warmup: unknown unit"),
    ],
)
def test_bad_parameters_name_themselves(factory, kwargs, fragment):
    with pytest.raises(ScheduleError, match=fragment.replace("(", r"\(")):
        factory(**kwargs)


@pytest.mark.parametrize(
    "spec, total, fragment",
    [
        ("cosine(peak=1, warmup=100)", 100, "leaves no steps to decay"),
        ("wsd(peak=1, warmup=30, decay=80)", 100, "longer than the run"),
        ("infinite(peak=1, cooldown='50%', anneal='60%')", 100, "longer than the run"),
        ("onecycle(peak=1, warmup=1)", 100, "phases that do not fit"),
        ("multistep(peak=1, milestones=[50, 20])", 100, "milestones must increase"),
        ("cosine(peak=1)", 0, "total_steps must be a positive int"),
    ],
)
def test_phases_longer_than_the_run(spec, total, fragment):
    with pytest.raises(ScheduleError, match=fragment):
        S.parse(spec).values(total)


def test_families_that_need_a_total_say_so():
    with pytest.raises(ScheduleError, match="needs the run's total_steps"):
        S.cosine(peak=1.0).at(3)
    assert S.step(peak=1.0, every=2, factor=0.5).at(5) == 0.25  # open-ended families do not


def test_past_the_end_holds_the_final_value():
    s = S.cosine(peak=1.0, final=0.1)
    assert s(np.array([100, 150, 10_000]), 100).tolist() == [0.1, 0.1, 0.1]


def test_piecewise():
    v = S.piecewise(points=[[0, 0.0], [10, 1.0], ["50%", 0.5]]).values(T)
    close(v, [i / 10 if i < 10 else (1.0 - 0.5 * (i - 10) / 15 if i < 25 else 0.5) for i in range(T)])
    with pytest.raises(ScheduleError, match="positions must increase"):
        S.piecewise(points=[[10, 1.0], [5, 0.5]]).values(T)
    with pytest.raises(ScheduleError, match="pairs"):
        S.piecewise(points=[1, 2])
