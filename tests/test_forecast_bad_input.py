"""Issue 13 section 6, bad input for the forecaster: schedules outside what a law was fitted on are
warned about (refused under --strict), a loss <= 0 or non-finite is never printed, and curves or
parameters no law can use are one-line errors."""

import json
import re

import numpy as np
import pytest

from cadence import schedules as S
from cadence.cli import main
from cadence.errors import ForecastError
from cadence.forecast import Curve, FittedLaw, fit, load
from cadence.forecast.fitting import RANGE_LONGER
from cadence.forecast.live import forecast_live, range_notes as live_notes, stable_phase
from cadence.forecast.optimize import nearest_specs, optimize_schedule, range_notes as optimize_notes

# Plausible Multi-Power parameters (close to the published 25M fit, in units of lr_scale).
MPL = {"L0": 2.9, "A": 0.45, "alpha": 0.5, "B": 0.4, "C": 1.5, "beta": 0.6, "gamma": 0.4}
PEAK = 3e-4
LAW = FittedLaw("multipower", MPL, PEAK)  # built directly: its fitted range is unknown, lr_scale is not
# What a fit of 3,000-step runs at PEAK records (areas in steps at lr_scale: the longest curve decayed).
RANGE = {"lr_min": 3e-5, "steps": 3000, "area": 2000.0, "first_area": 100.0}
RANGED = FittedLaw("multipower", MPL, PEAK, report={"range": RANGE})
T = 3000


def run_cli(capsys, argv):
    """(exit status, stdout, stderr lines)"""
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err.splitlines()


def one_line_error(capsys, argv, code):
    status, out, err = run_cli(capsys, argv)
    assert status == code and len(err) == 1 and err[0].startswith("cadence: error: "), (status, err)
    return out, err[0]


def losses_in(text: str) -> list[float]:
    return [float(w) for w in text.replace("|", " ").split() if w.replace(".", "", 1).replace("-", "", 1).isdigit()]


# -- the -583 case --------------------------------------------------------------------------------

def test_lrs_100x_the_fitted_peak_never_give_a_negative_loss(tmp_path, capsys):
    """The issue's case: a valid law asked about LRs far outside its range predicted -583 and exited 0."""
    far = S.parse(f"cosine(peak={100 * PEAK}, warmup=150)").values(T)
    raw = LAW._law().predict(MPL, far / PEAK, np.array([T - 1]))[0]  # the unchecked formula
    assert raw < 0  # the case reproduces: the formula goes below 0 there
    assert LAW.range_notes(far) == ["the schedule's peak LR 0.03 is 100x the largest LR the multipower law was fitted "
                                    "on (0.0003)"]
    with pytest.raises(ForecastError, match=r"predicts a loss of -3\d\.\d+ at step 2999, and a loss is > 0: this "
                                            r"schedule is outside what the law can describe .*100x the largest LR"):
        LAW.predict(far, [T - 1])

    path = str(LAW.save(tmp_path / "law.json"))
    spec = f"cosine(peak={100 * PEAK}, warmup=150)"
    for extra in ([], ["--csv"]):  # refused: one error line, nothing on stdout, never the negative number
        out, err = one_line_error(capsys, ["forecast", "predict", path, "--schedule", spec, "--total", str(T), *extra], 2)
        assert out == "" and "outside what the law can describe" in err and "100x" in err
    out, err = one_line_error(capsys, ["forecast", "predict", path, "--schedule", spec, "--total", str(T), "--strict"], 1)
    assert out == "" and err.startswith("cadence: error: --strict: outside what the law was fitted on: the schedule's "
                                        "peak LR 0.03 is 100x")

    # 100x the peak held constant: the law gives a positive loss, printed with one warning line; --strict refuses it
    status, out, err = run_cli(capsys, ["forecast", "predict", path, "--schedule", f"constant({100 * PEAK})",
                                        "--total", str(T)])
    assert status == 0 and err == ["cadence: warning: the schedule's peak LR 0.03 is 100x the largest LR the multipower "
                                   "law was fitted on (0.0003)"]
    assert "predicted final loss 2.9" in out and all(x > 0 for x in losses_in(out))
    one_line_error(capsys, ["forecast", "predict", path, "--schedule", f"constant({100 * PEAK})", "--total", str(T),
                            "--strict"], 1)


def test_inside_the_range_there_is_no_note_and_no_warning(tmp_path, capsys):
    path = str(RANGED.save(tmp_path / "law.json"))
    for spec in ("cosine(peak=3e-4, final=3e-5, warmup=150)", "wsd(peak=3e-4, warmup=150, decay='20%', final=3e-5)",
                 "constant(3e-4)"):
        assert RANGED.range_notes(S.parse(spec).values(T)) == []
        status, out, err = run_cli(capsys, ["forecast", "predict", path, "--schedule", spec, "--total", str(T), "--strict"])
        assert status == 0 and err == [] and "predicted final loss" in out
    # 3x the steps of the longest fitted curve, as the published 72,000-step cosine from 24,000-step fits: no note
    assert RANGED.range_notes(S.parse("cosine(peak=3e-4, final=3e-5, warmup=150)").values(3 * T)) == []


# -- range notes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, total, fragment", [
    ("cosine(peak=4e-4, final=4e-5)", T, "the schedule's peak LR 0.0004 is 1.33x the largest LR the multipower law was "
                                         "fitted on (0.0003)"),
    ("cosine(peak=1e-4, final=1e-5)", T, "the schedule's peak LR 0.0001 is 0.333x the peak LR the multipower law was "
                                         "fitted at (0.0003): a law fitted at a different peak"),
    ("cosine(peak=3e-4, final=3e-5)", 13_000, "the schedule runs 13,000 steps, 4.33x the longest curve the law was "
                                              "fitted on (3,000)"),
    ("constant(3e-4)", 8_500, "the schedule's LR area (sum of its LRs) is 4.25x the largest of the curves the law was "
                              "fitted on (0.6)"),
    ("constant(3e-4)", 50, "the schedule's LR area at its last step (0.015) is below that before the first loss the law "
                           "was fitted on (0.03): the law was not fitted that early in training"),
    ("cosine(peak=3e-4)", T, "of the schedule's 3,000 steps from its peak on (6.4%) have an LR below 3e-06, a tenth of "
                             "the smallest LR the law was fitted on (3e-05)"),
])
def test_each_way_out_of_the_range_is_one_sentence(spec, total, fragment):
    notes = RANGED.range_notes(S.parse(spec).values(total))
    assert len(notes) == 1 and fragment in notes[0] and "\n" not in notes[0], notes


def test_thresholds_at_their_boundaries():
    flat = lambda lr, n=T: np.full(n, lr)  # noqa: E731
    assert RANGED.range_notes(flat(1.1 * PEAK)) == [] and RANGED.range_notes(flat(0.5 * PEAK)) == []
    assert len(RANGED.range_notes(flat(1.1001 * PEAK))) == 1 and len(RANGED.range_notes(flat(0.4999 * PEAK))) == 1
    longest = int(RANGE_LONGER * RANGE["steps"])
    assert RANGED.range_notes(flat(0.6 * PEAK, longest)) == []  # 4x the steps, 3.6x the area
    assert [k for k, _ in RANGED.range_notes_by_kind(flat(0.6 * PEAK, longest + 1))] == ["steps"]
    # the last step of a decay to 0 alone is no note (at most 1% of the steps from the peak on)
    decay = np.concatenate([flat(PEAK, T - 1), [0.0]])
    assert RANGED.range_notes(decay) == []
    assert [k for k, _ in RANGED.range_notes_by_kind(np.concatenate([flat(PEAK, 2900), np.zeros(100)]))] == ["low"]
    # nothing to say about what predict refuses anyway
    assert RANGED.range_notes([]) == RANGED.range_notes(np.zeros(10)) == RANGED.range_notes([1.0, np.nan]) == []


def test_fit_records_what_it_was_fitted_on_and_a_law_file_keeps_it(tmp_path):
    total, warmup = 2000, 100
    curves = []
    for name, spec in (("const", "constant(value=3e-4, warmup=100)"),
                       ("cos", "cosine(peak=3e-4, final=3e-5, warmup=100)")):
        lrs = S.parse(spec).values(total)
        steps = np.arange(warmup, total - 200, 10)  # the runs measured up to step 1790
        curves.append(Curve(steps=steps, losses=LAW.predict(lrs, steps), lrs=lrs, name=name))
    law = fit(curves, law="multipower")
    got = law.report["range"]
    cos = S.parse("cosine(peak=3e-4, final=3e-5, warmup=100)").values(total)
    assert got["lr_min"] == pytest.approx(float(cos[1790]))  # the smallest LR after the peak, up to the last loss
    assert got["steps"] == 1791
    assert got["area"] == pytest.approx(float(np.sum(S.parse("constant(value=3e-4, warmup=100)").values(total)[:1791]))
                                        / PEAK)
    assert got["first_area"] == pytest.approx(float(np.sum(cos[:101])) / PEAK)
    again = load(law.save(tmp_path / "law.json"))
    assert again.fitted_range == pytest.approx(got)
    assert json.loads((tmp_path / "law.json").read_text())["report"]["range"] == got


# -- old law files, parameters --------------------------------------------------------------------

def law_doc(**changes):
    doc = {"format": "cadence.forecast.law/1", "law": "multipower", "params": dict(MPL), "lr_scale": PEAK,
           "warmup": "skip", "report": {"curves": {}}}
    doc.update(changes)
    return doc


def test_old_law_files_without_a_range_still_load_and_still_never_give_a_negative_loss(tmp_path, capsys):
    for doc in (law_doc(), {k: v for k, v in law_doc().items() if k not in ("report", "warmup")}):
        path = tmp_path / "old.json"
        path.write_text(json.dumps(doc))
        law = load(path)
        assert law.fitted_range is None
        long = S.parse("cosine(peak=3e-4)").values(100 * T)  # 100x the steps: unknown range, no note about it
        assert law.range_notes(long) == []
        assert len(law.range_notes(np.full(10, 10 * PEAK))) == 1  # lr_scale is in every law file: the peak is checked
        with pytest.raises(ForecastError, match="predicts a loss of -"):
            law.predict(S.parse("cosine(peak=3e-2)").values(T), [T - 1])
        status, out, err = run_cli(capsys, ["forecast", "predict", str(path), "--schedule", "cosine(peak=3e-4)",
                                            "--total", str(100 * T), "--strict"])
        assert status == 0 and err == [] and "predicted final loss" in out


@pytest.mark.parametrize("report, fragment", [
    ({"range": [1, 2]}, "report range must be an object of lr_min, steps, area, first_area; got list"),
    ({"range": {"steps": 0}}, "report range steps (the most steps of a fitted curve) must be a whole number >= 1; got 0.0"),
    ({"range": {"steps": 2.5}}, "must be a whole number >= 1; got 2.5"),
    ({"range": {"lr_min": -1e-4}}, "report range lr_min (the smallest LR after the peak) must be >= 0; got -0.0001"),
    ({"range": {"area": "big"}}, "report range area must be a number; got 'big'"),
    ({"range": {"first_area": float("nan")}}, "report range first_area must be a finite number"),
])
def test_a_malformed_range_is_a_one_line_error(tmp_path, capsys, report, fragment):
    path = tmp_path / "law.json"
    path.write_text(json.dumps(law_doc(report=report)))
    with pytest.raises(ForecastError, match="^" + re.escape(str(path)) + ": "):
        load(path)
    with pytest.raises(ForecastError) as info:
        FittedLaw("multipower", MPL, PEAK, report=report)
    assert fragment in str(info.value)
    _, err = one_line_error(capsys, ["forecast", "predict", str(path), "--schedule", "cosine(peak=3e-4)", "--total", "10"], 2)
    assert fragment in err


@pytest.mark.parametrize("law, params", [("multipower", MPL), ("annealing", {"L0": 2.9, "A": 0.45, "alpha": 0.5,
                                                                             "C": 0.002, "lam": 0.995})])
def test_a_negative_loss_floor_is_refused(tmp_path, capsys, law, params):
    bad = {**params, "L0": -0.5}
    with pytest.raises(ForecastError, match=f"^parameter L0 of the {law} law must be >= 0; got -0.5$"):
        FittedLaw(law, bad, PEAK)
    path = tmp_path / "law.json"
    path.write_text(json.dumps(law_doc(law=law, params=bad)))
    with pytest.raises(ForecastError, match="parameter L0 of the .* law must be >= 0"):
        load(path)
    _, err = one_line_error(capsys, ["forecast", "rank", str(path), "--total", "100", "--schedule", "a=cosine(peak=3e-4)"], 2)
    assert "parameter L0" in err and ">= 0; got -0.5" in err
    with pytest.raises(ForecastError, match="parameter L0"):
        fit([Curve(steps=np.arange(1, 50), losses=np.linspace(3, 2, 49), lrs=np.linspace(PEAK, PEAK / 10, 50))],
            law=law, fixed={"L0": -1.0})
    assert FittedLaw(law, {**params, "L0": 0.0}, PEAK).params["L0"] == 0.0


@pytest.mark.parametrize("name, value, allowed", [("A", -0.1, ">= 0"), ("alpha", -0.5, ">= 0"), ("B", -1.0, ">= 0"),
                                                  ("C", -1.0, ">= 0"), ("beta", 0.0, "> 0"), ("beta", -0.5, "> 0"),
                                                  ("gamma", float("nan"), "finite")])
def test_parameters_outside_what_the_formula_needs(name, value, allowed):
    with pytest.raises(ForecastError, match=f"parameter {name}.* {allowed}"):
        FittedLaw("multipower", {**MPL, name: value}, PEAK)


def test_any_finite_gamma_keeps_the_decay_term_bounded():
    """gamma is the one parameter that may be negative: G stays in [0, 1), so the decay term is at most B times
    the total decrement whatever gamma is (here a cosine from 1 to 0: at most B)."""
    lrs = S.parse("cosine(peak=3e-4)").values(T)
    for gamma in (-3.0, 0.0, 2.0):
        law = FittedLaw("multipower", {**MPL, "gamma": gamma, "A": 0.0}, PEAK)
        pred = law.predict(lrs, np.arange(1, T))
        assert np.all(pred >= MPL["L0"] - MPL["B"] - 1e-12) and np.all(pred <= MPL["L0"] + 1e-12)


# -- the other commands' --strict -----------------------------------------------------------------

def test_rank_warns_per_candidate_and_refuses_under_strict(tmp_path, capsys):
    path = str(RANGED.save(tmp_path / "law.json"))
    argv = ["forecast", "rank", path, "--total", str(T), "--schedule", "ok=cosine(peak=3e-4, final=3e-5)",
            "--schedule", "high=constant(6e-4)"]
    status, out, err = run_cli(capsys, argv)
    assert status == 0 and err == ["cadence: warning: --schedule high: the schedule's peak LR 0.0006 is 2x the largest "
                                   "LR the multipower law was fitted on (0.0003)"]
    assert "| 1 | ok |" in out or "| 2 | ok |" in out
    out, err = one_line_error(capsys, argv + ["--strict"], 1)
    assert out == "" and "--strict: outside what the law was fitted on: --schedule high: the schedule's peak LR" in err
    # a candidate the law gives a loss <= 0 for: the ranking is refused, naming it, never a table with it
    out, err = one_line_error(capsys, argv + ["--schedule", "far=cosine(peak=3e-2)"], 2)
    assert out == "" and "--schedule far: the multipower law predicts a loss of -" in err


def test_optimize_warns_refuses_under_strict_and_never_searches_into_negative_losses(tmp_path, capsys):
    short = FittedLaw("multipower", MPL, PEAK, report={"range": {"lr_min": 3e-5, "steps": 200, "area": 150.0,
                                                                 "first_area": 10.0}})
    path = str(short.save(tmp_path / "law.json"))
    argv = ["forecast", "optimize", path, "--total", "1000", "--peak", "3e-4", "--warmup", "100"]
    status, out, err = run_cli(capsys, argv)
    assert status == 0 and len(err) >= 2 and all(line.startswith("cadence: warning: ") for line in err), err
    assert "runs 1,000 steps, 5x the longest curve" in err[0] and "LR area" in err[1]
    assert "optimised non-increasing schedule: predicted final loss" in out
    assert all(x > 0 for x in losses_in(out.split("predicted final loss ")[1].split()[0]))
    out, err = one_line_error(capsys, argv + ["--strict"], 1)
    assert out == "" and "--strict: outside what the law was fitted on: the schedule runs 1,000 steps" in err
    assert optimize_notes(RANGED, T, PEAK, 100) == []

    # 10x the peak: the law's losses go below 0 there; refused in one line, never a "best" negative loss
    out, err = one_line_error(capsys, ["forecast", "optimize", path, "--total", "1000", "--peak", "3e-3"], 2)
    assert out == "" and "predicts a loss of -" in err and "10x the largest LR" in err
    with pytest.raises(ForecastError, match="predicts a loss of -"):
        optimize_schedule(LAW, 1000, 3e-3, 50)
    # the nearest ordinary schedules the law refuses are reported as refused, not given a number
    nearest = nearest_specs(LAW, np.full(1000, 3e-3), 1000, 3e-3, 0)
    assert len(nearest) == 3 and all(isinstance(loss, str) and "a loss is > 0" in loss for _, _, loss in nearest)


def test_the_search_never_keeps_a_schedule_whose_loss_is_not_positive(monkeypatch):
    """The search evaluates the raw formula (Law.predict) thousands of times. Here it is made to give -5 for every
    schedule that ends below 1% of the peak, where the real law's optimum ends: the search must keep a schedule
    the law gives a positive loss for (one of its starts, an exponential decay to 5%, is one), and refuse in one
    line when it never finds one."""
    from cadence.forecast.laws import MultiPower

    real = MultiPower.predict

    def negative_when_decayed(self, p, lrs, steps):
        out = real(self, p, lrs, steps)
        return np.full_like(out, -5.0) if lrs[-1] < 0.01 * lrs.max() else out

    free, _ = optimize_schedule(RANGED, 500, PEAK, 50)
    assert free[-1] < 0.01 * PEAK  # without the patch the search ends below 1% of the peak
    monkeypatch.setattr(MultiPower, "predict", negative_when_decayed)
    lrs, final = optimize_schedule(RANGED, 500, PEAK, 50)
    assert lrs[-1] >= 0.01 * PEAK and final > 0 and final == float(RANGED.predict(lrs, [499])[0])
    monkeypatch.setattr(MultiPower, "predict", lambda self, p, lrs, steps: np.array([-1.0]))
    with pytest.raises(ForecastError, match="^no schedule the search tried has a prediction the multipower law can "
                                            "give .*not > 0"):
        optimize_schedule(RANGED, 500, PEAK, 50)


def test_optimize_on_a_normal_law_is_unchanged_by_the_checks(tmp_path, capsys):
    lrs, final = optimize_schedule(RANGED, 1000, PEAK, 50)
    assert final > 0 and np.all(np.diff(lrs[50:]) <= 1e-18)
    assert final <= min(loss for _, _, loss in nearest_specs(RANGED, lrs, 1000, PEAK, 50)) + 1e-9


def stable_csv(path, n=1000, lr=PEAK):
    lrs = S.parse(f"constant(value={lr}, warmup=150)").values(n)
    losses = LAW.predict(np.full(n, PEAK), np.arange(n))  # any falling loss
    path.write_text("step,lr,loss\n" + "".join(f"{i},{float(a)!r},{float(b)!r}\n" for i, (a, b) in enumerate(zip(lrs, losses))))
    return str(path)


def test_live_warns_per_law_file_and_refuses_under_strict(tmp_path, capsys):
    run = stable_csv(tmp_path / "stable.csv")
    good = str(RANGED.save(tmp_path / "good.json"))
    low = str(FittedLaw("multipower", MPL, PEAK / 3).save(tmp_path / "low.json"))  # fitted at a third of the run's LR
    status, out, err = run_cli(capsys, ["forecast", "live", run, "--law", good, "--cooldown", "200", "--json"])
    assert status == 0 and err == [] and set(json.loads(out)) == {"now", "later"}
    argv = ["forecast", "live", run, "--law", good, "--law", low, "--cooldown", "200", "--json"]
    status, out, err = run_cli(capsys, argv)
    assert status == 0 and err == [f"cadence: warning: --law {low}: the schedule's peak LR 0.0003 is 3x the largest LR "
                                   "the multipower law was fitted on (0.0001)"]
    assert all(p["loss"] > 0 and p["low"] > 0 for p in [json.loads(out)["now"]] + json.loads(out)["later"])
    out, err = one_line_error(capsys, argv + ["--strict"], 1)
    assert out == "" and f"--strict: outside what the law was fitted on: --law {low}: the schedule's peak LR" in err
    # the Python API gives the same notes, per law
    lrs = np.array([float(line.split(",")[1]) for line in open(run).read().splitlines()[1:]])
    assert live_notes(lrs, [RANGED, load(low)], 200) == [[], [err.split(f"--law {low}: ")[1]]]
    assert forecast_live(lrs, [RANGED, load(low)], 200).range_notes == live_notes(lrs, [RANGED, load(low)], 200)


def test_live_a_long_cooldown_is_checked_at_its_latest_start():
    lrs = S.parse("constant(value=3e-4, warmup=150)").values(2500)
    # the latest start (now + 50%) plus the cooldown runs past 4x the fitted 3,000 steps; the first does not
    notes = live_notes(lrs, RANGED, 9000)
    assert [n.split(" steps,")[0] for n in notes[0] if "runs" in n] == ["the schedule runs 12,750"]


# -- curves no law can use ------------------------------------------------------------------------

def write(path, lrs, losses, steps=None):
    steps = np.arange(len(lrs)) if steps is None else steps
    path.write_text("step,lr,loss\n" + "".join(f"{int(s)},{float(a)!r},{float(b)!r}\n" for s, a, b in zip(steps, lrs, losses)))
    return str(path)


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_curves_of_one_to_three_rows_are_too_short_to_fit(tmp_path, capsys, rows):
    path = write(tmp_path / "short.csv", np.linspace(PEAK, PEAK / 2, rows), np.linspace(3.0, 2.9, rows))
    for law in ("multipower", "annealing"):
        _, err = one_line_error(capsys, ["forecast", "fit", path, "--law", law, "-o", str(tmp_path / "law.json")], 2)
        assert f"too few points to fit: the {law} law has" in err and f"only {rows} measured loss" in err


@pytest.mark.parametrize("law, terms", [("multipower", "B, C, beta, gamma"), ("annealing", "C, lam")])
def test_a_constant_lr_cannot_fit_a_law_of_decay(tmp_path, capsys, law, terms):
    n = 400
    path = write(tmp_path / "const.csv", np.full(n, PEAK), LAW.predict(np.full(n, PEAK), np.arange(n)))
    _, err = one_line_error(capsys, ["forecast", "fit", path, "--law", law, "-o", str(tmp_path / "law.json")], 2)
    assert f"no curve's LR decays after its warmup, so nothing shows what a decay does to the loss (the {law} law's " \
           f"{terms}): add a run whose LR decays" in err


def test_losses_that_never_change_are_refused(tmp_path, capsys):
    n = 400
    cos = S.parse("cosine(peak=3e-4)").values(n)
    a = write(tmp_path / "a.csv", cos, np.full(n, 3.0))
    b = write(tmp_path / "b.csv", np.full(n, PEAK), np.full(n, 3.0))
    for runs in ([a], [a, b]):
        _, err = one_line_error(capsys, ["forecast", "fit", *runs, "-o", str(tmp_path / "law.json")], 2)
        assert f"every measured loss is 3 ({n * len(runs):,} measurements): a loss that never changes shows nothing" in err
    assert not (tmp_path / "law.json").exists()
    assert fit([Curve(steps=np.arange(n), losses=np.full(n, 3.0), lrs=cos)], strict=False).params["L0"] > 0


@pytest.mark.parametrize("lrs, fragment", [
    (PEAK * (1 + np.cos(np.pi * np.arange(400) / 50)) / 2 + 1e-5, "rising again after falling (a cyclic or re-warmed "
                                                                   "schedule)"),
    (PEAK * (1 + np.cos(np.pi * np.arange(430) / 50)) / 2 + 1e-5, "decaying, in a schedule that has also risen again "
                                                                   "(cyclic?)"),
    (S.parse("cosine(peak=3e-4, warmup=100)").values(400), "its LR is decaying; it fell"),
    (S.parse("cosine(peak=3e-4, warmup=100)").values(1000)[:50], "still rising (warmup?)"),
])
def test_live_says_clearly_why_a_run_that_is_not_stable_is_refused(tmp_path, capsys, lrs, fragment):
    path = write(tmp_path / "run.csv", lrs, 3.0 - 0.5 * np.arange(len(lrs)) / len(lrs))
    law = str(LAW.save(tmp_path / "law.json"))
    for extra in ([], ["--strict"]):
        _, err = one_line_error(capsys, ["forecast", "live", path, "--law", law, "--cooldown", "100", *extra], 2)
        assert "not in a constant-LR phase at its end" in err and fragment in err
        assert "forecast live forecasts a cooldown from a constant LR" in err
    with pytest.raises(ForecastError, match="not in a constant-LR phase"):
        stable_phase(lrs)
