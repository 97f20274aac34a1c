import numpy as np
import pytest

from cadence import schedules as S
from cadence.errors import ScheduleError


def test_warmup_shapes_and_start():
    base = S.constant(value=1.0)
    lin = S.warmup(base, duration=10, start=0.2).values(30)
    assert lin[0] == 0.2 and lin[5] == pytest.approx(0.6) and lin[10] == 1.0
    cos = S.warmup(base, duration=10, shape="cosine").values(30)
    assert cos[5] == pytest.approx(0.5) and cos[1] < lin[1]
    exp = S.warmup(base, duration=10, shape="exp", start=0.01).values(30)
    assert exp[5] == pytest.approx(0.1)
    with pytest.raises(ScheduleError, match="start > 0"):
        S.warmup(base, duration=10, shape="exp")


def test_warmup_rebases_the_inner_clock():
    inner = S.cosine(peak=1.0, final=0.0)
    v = S.warmup(inner, duration=20).values(100)
    assert np.array_equal(v[20:], inner.values(80))


def test_scale_and_multiply():
    c = S.cosine(peak=1.0)
    assert np.array_equal((c * 0.5).values(40), c.values(40) * 0.5)
    assert np.array_equal((0.5 * c).values(40), c.values(40) * 0.5)
    cyc = S.cyclic(low=0.5, peak=1.0, up=4)
    assert np.array_equal(S.scale(c, by=cyc).values(40), c.values(40) * cyc.values(40))


def test_clip():
    v = S.clip(S.linear(peak=1.0), floor=0.2, ceiling=0.8).values(100)
    assert v.max() == 0.8 and v.min() == 0.2
    with pytest.raises(ScheduleError, match="floor"):
        S.clip(S.linear(peak=1.0), floor=0.9, ceiling=0.1)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_decay_from_starts_at_the_running_value(shape):
    main = S.cosine(peak=1.0, final=0.0)
    s = S.decay_from(main, at=37, duration=20, final=0.01, shape=shape)
    v, m = s.values(100), main.values(100)
    assert np.array_equal(v[:37], m[:37])
    assert v[37] == m[37]  # the cooldown starts from where the schedule is
    assert v[57] == pytest.approx(0.01) and v[-1] == pytest.approx(0.01)
    assert np.all(np.diff(v[37:58]) <= 1e-15)


def test_decay_from_to_the_end_by_default():
    v = S.decay_from(S.constant(value=1.0), at="80%", final=0.0).values(100)
    assert v[79] == 1.0 and v[80] == 1.0 and v[99] == pytest.approx(1 / 20)


def test_rewarm_for_continual_pretraining():
    first = S.cosine(peak=1.0, final=0.1)
    second = S.wsd(peak=0.5, decay="50%")
    v = S.rewarm(first, second, at=50, warmup=10).values(150)
    assert np.array_equal(v[:50], first.values(150)[:50])
    assert v[50] == first.at(50, 150)  # ramps from where the first schedule was
    assert v[60] == 0.5
    assert np.array_equal(v[60:], second.values(90))


def test_join_validation():
    with pytest.raises(ScheduleError, match="one fewer"):
        S.join(S.constant(), S.constant(), at=[])
    with pytest.raises(ScheduleError, match="must increase"):
        S.join(S.constant(), S.constant(), S.constant(), at=[50, 20]).values(100)
    with pytest.raises(ScheduleError, match="inside the run"):
        S.join(S.constant(), S.constant(), at=[100]).values(100)


def test_join_fraction_inside_a_piece_is_of_that_piece():
    v = S.join(S.constant(value=1.0), S.wsd(peak=1.0, decay="50%"), at=[50]).values(150)
    assert v[99] == 1.0 and v[100] == 1.0 and v[101] < 1.0


class TestReplan:
    def test_replan_keeps_the_past_and_moves_the_wsd_decay(self):
        s = S.wsd(peak=1.0, warmup=10, decay="20%")
        r = S.replanned(s, totals=[[0, 100], [50, 200]])
        v = r.values(200)
        assert np.array_equal(v[:50], s.values(100)[:50])
        assert np.array_equal(v[50:], s.values(200)[50:])
        assert np.all(v[10:160] == 1.0)  # extending during the stable phase is seamless

    def test_stretch_is_continuous_for_cosine(self):
        s = S.cosine(peak=1.0, final=0.0)
        r = S.replanned(s, totals=[[0, 100], [40, 160, "stretch"]])
        v = r.values(160)
        old = s.values(100)
        assert np.array_equal(v[:40], old[:40])
        assert v[40] == old[40]
        assert abs(v[41] - v[40]) < abs(old[41] - old[40])  # the rest is stretched, so flatter
        assert v[-1] == pytest.approx(old[-1], abs=1e-3)

    def test_shortening(self):
        s = S.wsd(peak=1.0, decay=20)
        v = S.replanned(s, totals=[[0, 200], [50, 100]]).values(100)
        assert v[79] == 1.0 and v[80] == 1.0 and v[99] < 0.1

    @pytest.mark.parametrize(
        "totals, fragment",
        [
            ([[5, 100]], "first record must be at step 0"),
            ([[0, 100], [50, 40]], "must be larger than the step"),
            ([[0, 100], [120, 200, "stretch"]], "cannot stretch"),
            ([[0, 100], [50, 200, "bend"]], "mode must be one of"),
            ([[0, 100], [50, 200], [50, 300]], "must increase"),
        ],
    )
    def test_validation(self, totals, fragment):
        with pytest.raises(ScheduleError, match=fragment):
            S.replanned(S.cosine(), totals=totals)


def test_rewarm_at_step_0_starts_a_continued_run_from_the_old_lr():
    """A run started from a finished one (--init): warm from its last LR to the new peak, then decay again."""
    v = S.rewarm(S.constant(value=2e-4), S.cosine(peak=1e-3, final=1e-4), at=0, warmup=10).values(110)
    assert v[0] == pytest.approx(2e-4) and v[5] == pytest.approx(6e-4) and v[10] == pytest.approx(1e-3)
    assert v[-1] == pytest.approx(1e-4, rel=0.01) and (np.diff(v[10:]) <= 0).all()
