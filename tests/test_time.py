import pytest

from cadence.errors import DurationError
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
