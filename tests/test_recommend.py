import json
import math

import pytest

from cadence import schedules as S
from cadence.cli import main
from cadence.errors import CadenceError
from cadence.forecast.hyper import parse_count, power_scheduler, recommend, step_law
from cadence.time import Rates


def test_step_law_values_at_a_documented_point():
    a = step_law("1B", "100B", seq_len=4096)
    # 1.79 * 1e9^-0.713 * 1e11^0.307 and 0.58 * 1e11^0.571, worked out by hand.
    assert a.values["peak_lr"] == pytest.approx(1.632e-3, rel=2e-3)
    assert a.values["batch_tokens"] == pytest.approx(1.108e6, rel=2e-3)
    assert a.values["batch_sequences"] == 270 and a.values["steps"] == math.ceil(1e11 / (270 * 4096))
    assert a.in_range and not a.flags


@pytest.mark.parametrize("n, d, expected", [
    ("400M", "40B", []),
    ("0.84M", "8M", ["N=840K is outside", "D=8M is outside"]),
    ("2B", "100B", ["N=2B is outside"]),
    ("70B", "15T", ["N=70B is outside", "N=70B is above 7B, which the paper does not discuss", "D=15T is outside"]),
])
def test_step_law_flags_inputs_outside_its_documented_range(n, d, expected):
    flags = step_law(n, d).flags
    assert len(flags) == len(expected) and all(f.startswith(e) for f, e in zip(flags, expected)), flags


def test_power_scheduler_matches_the_power_schedule_it_prints():
    a = power_scheduler("1B", "100B", batch_sequences=270, seq_len=4096)
    steps = math.ceil(1e11 / (270 * 4096))
    end = S.parse(a.spec).value_at(steps, steps + 1, rates=Rates(samples_per_step=270, tokens_per_sample=4096))
    assert end == pytest.approx(min(0.02, 270 * 4.6 * (steps * 270 * 4096) ** -0.51), rel=1e-9)
    assert a.values["lr_at_end"] == pytest.approx(min(0.02, 270 * 4.6 * 1e11 ** -0.51), rel=1e-12)
    # Exactly at cap_until_tokens the power law meets the 0.02 cap.
    assert 270 * 4.6 * a.values["cap_until_tokens"] ** -0.51 == pytest.approx(0.02, rel=1e-12)
    assert power_scheduler("7B", "1T", 1024, 4096).flags == ["N=7B is above 3B, the largest models the paper trained with it"]


@pytest.mark.parametrize("text, value", [("350M", 3.5e8), ("1.5B", 1.5e9), ("2T", 2e12), ("1e9", 1e9), ("12k", 1.2e4),
                                         (" 7 G ", 7e9), (5, 5.0)])
def test_parse_count(text, value):
    assert parse_count(text, "--params") == value


@pytest.mark.parametrize("text", ["abc", "-1", "0", "nan", "1X", "", "1e400", True])
def test_parse_count_rejects(text):
    with pytest.raises(CadenceError, match="--params must be a positive number such as 1e9, 350M"):
        parse_count(text, "--params")


def test_recommend_needs_a_sequence_length_for_the_power_scheduler():
    assert [a.law for a in recommend("1B", "100B")] == ["step-law"]
    assert [a.law for a in recommend("1B", "100B", seq_len=2048)] == ["step-law", "power-scheduler"]
    assert recommend("1B", "100B", seq_len=2048, batch_sequences=64)[1].values["batch_sequences"] == 64
    with pytest.raises(CadenceError, match="a batch size in sequences needs the sequence length"):
        recommend("1B", "100B", batch_sequences=64)


def test_recommend_cli(capsys):
    assert main(["recommend", "--params", "1B", "--tokens", "100B", "--seq-len", "4096"]) == 0
    out, err = capsys.readouterr()
    assert "peak_lr            0.00163" in out and "power(peak=0.02, a=4.6, b=-0.51, batch=270, per='tok')" in out
    assert "in range           yes" in out and err == ""

    assert main(["recommend", "--params", "25M", "--tokens", "1B"]) == 0
    out, err = capsys.readouterr()
    assert "in range           NO" in out and "! N=25M is outside the documented 400M-1B parameters" in out
    assert err.startswith("cadence: warning: 2 input(s) outside") and err.count("\n") == 1
    assert main(["recommend", "--params", "25M", "--tokens", "1B", "--strict"]) == 1
    assert main(["recommend", "--params", "1B", "--tokens", "100B", "--strict"]) == 0
    capsys.readouterr()

    assert main(["recommend", "--params", "1B", "--tokens", "100B", "--seq-len", "4096", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["law"] for d in data] == ["step-law", "power-scheduler"] and data[0]["in_range"] is True


@pytest.mark.parametrize("argv, fragment", [
    (["recommend", "--params", "big", "--tokens", "1B"], "--params: the parameter count N must be a positive number"),
    (["recommend", "--params", "1B", "--tokens", "-5"], "--tokens: the token count D must be a positive number"),
    (["recommend", "--params", "1B", "--tokens", "1B", "--batch", "64"], "--seq-len: a batch size in sequences needs"),
    (["recommend", "--params", "1B", "--tokens", "1B", "--seq-len", "0"], "expected a positive whole number"),
])
def test_recommend_bad_input(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err
