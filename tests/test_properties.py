"""Property-based tests: bounds, continuity at phase boundaries, scalar == vector, spec round trip."""

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from cadence import schedules as S

peaks = st.floats(1e-6, 10.0)
fractions = st.floats(0.0, 1.0)


@st.composite
def decaying(draw):
    """A decaying family with random parameters and a run it fits in."""
    total = draw(st.integers(20, 3000))
    peak = draw(peaks)
    final = draw(fractions) * peak
    warmup = draw(st.integers(0, total // 3))
    kind = draw(st.sampled_from(["linear", "cosine", "rex", "polynomial", "wsd", "exponential", "infinite"]))
    if kind == "polynomial":
        s = S.polynomial(peak=peak, final=final, warmup=warmup, power=draw(st.floats(0.2, 4.0)))
    elif kind == "wsd":
        shape = draw(st.sampled_from(["linear", "cosine", "1-sqrt", "exp", "rex"]))
        final = max(final, peak * 1e-3) if shape == "exp" else final
        s = S.wsd(peak=peak, warmup=warmup, decay=draw(st.integers(1, total - warmup)), final=final, shape=shape)
    elif kind == "exponential":
        final = max(final, peak * 1e-3)
        s = S.exponential(peak=peak, final=final, warmup=warmup)
    elif kind == "infinite":
        rest = total - warmup
        # Zero-length phases are allowed but are deliberate jumps; continuity is about real phases.
        cool = draw(st.integers(1, rest // 2))
        s = S.infinite(peak=peak, constant=(final + peak) / 2, final=final, warmup=warmup, cooldown=cool,
                       anneal=draw(st.integers(1, rest - cool)))
    else:
        s = getattr(S, kind)(peak=peak, final=final, warmup=warmup)
    return s, total, peak, final


@given(decaying())
def test_values_stay_between_zero_and_peak_and_end_low(case):
    s, total, peak, final = case
    v = s.values(total)
    assert v.shape == (total,)
    assert np.all(np.isfinite(v))
    assert np.all(v >= -1e-15) and np.all(v <= peak * (1 + 1e-12))
    assert np.all(v[-1] >= final * (1 - 1e-12))


@given(decaying())
def test_no_jumps_bigger_than_the_steepest_phase(case):
    """Continuity at phase boundaries: a step never moves the value more than the steepest
    phase's average slope allows (times a shape factor for cosine/sqrt/rex/exp)."""
    s, total, peak, final = case
    v = s.values(total)
    params = s.params
    phases = [params.get(k, 0) for k in ("warmup", "decay", "cooldown", "anneal")]
    shortest = min([p for p in phases if isinstance(p, int) and p > 0] + [total - params.get("warmup", 0)])
    # 1-sqrt, rex and exp shapes are steep at their start: allow a generous factor.
    bound = peak / max(shortest, 1) * (np.pi / 2 + 1e-9)
    if params.get("shape") in ("1-sqrt", "exp", "rex") or isinstance(s, (S.Rex, S.Exponential)):
        bound = peak * max(1.0 / np.sqrt(max(shortest, 1)), 8.0 / max(shortest, 1))
    if isinstance(s, S.Polynomial):  # (1-p)^power: steepest first step (power/L) or last step (1/L)^power
        worst = max(s.power / shortest, (1.0 / shortest) ** min(s.power, 1.0))
        bound = max(bound, peak * worst * (1 + 1e-9))
    assert np.max(np.abs(np.diff(v))) <= bound + 1e-12


@given(decaying(), st.data())
def test_scalar_and_vector_agree_exactly(case, data):
    s, total, _, _ = case
    v = s.values(total)
    for i in data.draw(st.lists(st.integers(0, total - 1), min_size=1, max_size=8)):
        assert s.at(i, total) == v[i]
    lo = data.draw(st.integers(0, total - 1))
    hi = data.draw(st.integers(lo + 1, total))
    assert np.array_equal(s(np.arange(lo, hi), total), v[lo:hi])


@given(decaying())
def test_spec_round_trips(case):
    s, total, _, _ = case
    again = S.parse(s.spec())
    assert again == s
    assert np.array_equal(again.values(total), s.values(total))


@given(st.integers(2, 400), st.integers(1, 399), peaks)
def test_warmup_ramps_from_zero_to_peak(total, warmup, peak):
    assume(warmup < total)
    v = S.cosine(peak=peak, warmup=warmup).values(total)
    i = np.arange(warmup)
    assert np.array_equal(v[:warmup], peak * (i / warmup))
    assert v[warmup] == peak


@given(st.integers(30, 500), st.integers(1, 28), st.data())
def test_join_gives_each_piece_its_own_clock(total, at, data):
    assume(at < total)
    a = S.linear(peak=1.0, final=0.5)
    b = S.cosine(peak=0.5, final=0.0)
    v = S.join(a, b, at=[at]).values(total)
    assert np.array_equal(v[:at], a.values(at))
    assert np.array_equal(v[at:], b.values(total - at))
