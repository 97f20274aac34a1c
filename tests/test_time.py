import numpy as np
import pytest

from cadence.errors import DurationError, LimitError
from cadence.time import Context, Duration, Rates, Unit, parse_duration


@pytest.mark.parametrize(
    "text, value, unit",
    [
        (500, 500, Unit.STEP),
        ("500st", 500, Unit.STEP),
        ("500", 500, Unit.STEP),
        ("1.5Kst", 1500, Unit.STEP),
        ("20%", 0.2, Unit.FRACTION),
        ("0.2dur", 0.2, Unit.FRACTION),
        ("100%", 1.0, Unit.FRACTION),
        ("3ep", 3, Unit.EPOCH),
        ("2Mtok", 2e6, Unit.TOKEN),
        ("64Ksa", 64e3, Unit.SAMPLE),
        ("1Btok", 1e9, Unit.TOKEN),
        ("2Ttok", 2e12, Unit.TOKEN),
        (" 7 epochs ", 7, Unit.EPOCH),
        (200.0, 200, Unit.STEP),
    ],
)
def test_parse_forms(text, value, unit):
    d = parse_duration(text)
    assert d.unit is unit
    assert d.value == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("20", None),  # fine: a plain number string is steps
        ("0%", "outside (0, 1]"),
        ("120%", "outside (0, 1]"),
        ("1.5dur", "outside (0, 1]"),
        ("3parsecs", "unknown unit"),
        ("abc", "cannot read"),
        ("-5st", "cannot read"),
        (-3, ">= 0"),
        (0.2, "float"),
        (float("nan"), "float"),
        ("1.5st", "whole number"),
        ("2K%", "multiplier"),
        (True, "must be"),
        ([1], "must be"),
    ],
)
def test_parse_rejects(bad, fragment):
    if fragment is None:
        assert parse_duration(bad).value == 20
        return
    with pytest.raises(DurationError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        parse_duration(bad, what="warmup")


def test_error_names_the_parameter():
    with pytest.raises(DurationError, match="^warmup"):
        parse_duration("12parsecs", what="warmup")


def test_conversions_use_the_run_rates():
    rates = Rates(samples_per_step=32, tokens_per_sample=128, steps_per_epoch=50)
    assert rates.tokens_per_step == 4096
    assert parse_duration("2Mtok").to_steps(rates=rates) == pytest.approx(2e6 / 4096)
    assert parse_duration("64Ksa").to_steps(rates=rates) == 2000
    assert parse_duration("3ep").to_steps(rates=rates) == 150
    assert parse_duration("20%").to_steps(total=1000) == 200
    assert parse_duration(37).to_steps() == 37
    assert rates.from_steps(10, Unit.TOKEN) == 40960
    assert rates.from_steps(100, Unit.EPOCH) == 2


@pytest.mark.parametrize(
    "text, rates, missing",
    [
        ("2Mtok", Rates(samples_per_step=8), "tokens_per_sample"),
        ("2Mtok", Rates(), "samples_per_step and tokens_per_sample are"),
        ("64Ksa", Rates(tokens_per_sample=4), "samples_per_step"),
        ("3ep", Rates(samples_per_step=4), "steps_per_epoch"),
    ],
)
def test_missing_rate_is_an_error_not_a_guess(text, rates, missing):
    with pytest.raises(DurationError, match=missing):
        parse_duration(text).to_steps(total=100, rates=rates)


def test_fraction_needs_total():
    with pytest.raises(DurationError, match="total length is not known"):
        parse_duration("10%").to_steps()


@pytest.mark.parametrize("kw", [{"samples_per_step": 0}, {"tokens_per_sample": -1}, {"steps_per_epoch": float("nan")}])
def test_rates_validate(kw):
    with pytest.raises(DurationError, match=next(iter(kw))):
        Rates(**kw)


def test_duration_str_round_trips():
    for text in ["500", "20%", "3ep", "2Mtok", "64Ksa"]:
        d = parse_duration(text)
        assert parse_duration(str(d)) == d


def test_context_span_keeps_rates():
    ctx = Context(100, Rates(samples_per_step=2))
    assert ctx.span(40).total == 40 and ctx.span(40).rates == ctx.rates
    assert ctx.steps(Duration(0.5, Unit.FRACTION)) == 50


# -- hardening (issue 9) ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, error, fragment", [
    (10**400, LimitError, "2\\*\\*53"),  # was OverflowError
    (-(10**5000), DurationError, "int of 16610 bits"),  # too long to print as decimal text
    (2**53 + 1, LimitError, "2\\*\\*53"),
    ("1e400", DurationError, "not finite"),
    ("1e20st", LimitError, "2\\*\\*53"),
    ("1" + " " * 20_000 + "Kx", DurationError, "unknown unit"),  # was cubic backtracking: minutes
    (" " * 20_000 + "1.5.5", DurationError, "cannot read"),
    ("5.", DurationError, "cannot read"),
], ids=["huge-int", "huge-negative-int", "past-2**53", "1e400", "1e20st", "long-spaces", "long-leading", "5."])
def test_parse_refuses_huge_and_long_input_quickly(value, error, fragment):
    with pytest.raises(error, match=fragment):
        parse_duration(value)


def test_numpy_ints_are_steps_and_the_limit_itself_is_allowed():
    assert parse_duration(np.int64(7)) == Duration(7.0, Unit.STEP)
    assert parse_duration(2**53).value == 2.0**53


@pytest.mark.parametrize("value, unit", [(float("nan"), Unit.STEP), (-1.0, Unit.STEP), (1.5, Unit.FRACTION),
                                         (2.0**60, Unit.STEP), ("3", Unit.STEP), (1.0, "st")])
def test_a_duration_built_directly_is_validated(value, unit):
    with pytest.raises((DurationError, LimitError)):
        Duration(value, unit)


def test_conversions_that_overflow_are_refused():
    rates = Rates(samples_per_step=1e-300, tokens_per_sample=1e-5)
    with pytest.raises(DurationError, match="too many steps"):
        parse_duration("1e300tok").to_steps(rates=rates)


def test_parse_count_shares_the_linear_grammar():
    from cadence.time import parse_count

    assert parse_count(" 350M ") == 350e6 and parse_count(10**3) == 1000.0
    for bad in ("1" + " " * 20_000 + "x", 10**400, "inf", "-1"):
        with pytest.raises(DurationError, match="positive number"):
            parse_count(bad)
