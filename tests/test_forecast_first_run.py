"""A new user's first forecast (issue 13, section 5): the README's forecasting sequence runs end to end,
a fit that fails says why in the runs' terms and what to do, and every forecasting command's --help shows
an example."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from cadence import schedules as S
from cadence.cli import main
from cadence.forecast import Curve, FittedLaw, ForecastError, fit

ROOT = Path(__file__).resolve().parents[1]
ANNEAL = {"L0": 2.9, "A": 0.45, "alpha": 0.5, "C": 0.002, "lam": 0.995}
T = 3000


def _curve(spec: str, losses=None, every: int = 50, first: int = 200, name: str = "run") -> Curve:
    lrs = S.parse(spec).values(T)
    steps = np.arange(first, T, every)
    if losses is None:
        losses = FittedLaw("annealing", ANNEAL, 3e-4).predict(lrs, steps)
    return Curve(steps=steps, losses=losses(steps) if callable(losses) else losses, lrs=lrs, name=name)


# --- fit failures say why, in the runs' terms, and what to do ---------------------------------------------

def _message(curves, law="multipower", **kw) -> str:
    with pytest.raises(ForecastError) as info:
        fit(curves, law=law, starts=2, candidates=16, **kw)
    text = str(info.value)
    assert "\n" not in text and "--" not in text  # one line, no CLI flags in a library error
    return text


def test_too_few_points_after_warmup():
    c = _curve("cosine(peak=3e-4, warmup=200)", every=600)  # 5 points for 7 parameters
    text = _message([c])
    assert text.startswith("too few points to fit: the multipower law has 7 free parameters but the curves have only 5")
    assert "train longer or measure the loss more often" in text


@pytest.mark.parametrize("law, terms", [("multipower", "B, C, beta, gamma"), ("annealing", "C, lam")])
def test_no_decay_in_any_run(law, terms):
    c = _curve("constant(value=3e-4, warmup=200)")
    text = _message([c, _curve("constant(value=2e-4, warmup=200)", name="other")], law=law)
    assert text.startswith("no curve's LR decays after its warmup") and f"the {law} law's {terms}" in text
    assert "add a run whose LR decays, such as a cosine one" in text
    fit([c], law=law, starts=1, candidates=4, max_iter=20, strict=False)  # asked for leniently: fitted anyway


def test_a_loss_that_does_not_decrease():
    c = _curve("cosine(peak=3e-4, warmup=200)", losses=lambda s: 2.0 + s / T, name="rising")
    text = _message([c])
    assert "does not fit these curves (training residuals: mean" in text
    assert "the loss does not decrease (rising from" in text and "check that the run learns" in text


def test_a_loss_too_noisy_to_fit():
    rng = np.random.default_rng(0)
    clean = _curve("cosine(peak=3e-4, warmup=200)").losses
    c = _curve("cosine(peak=3e-4, warmup=200)", losses=clean * np.exp(rng.normal(0, 0.05, len(clean))), name="noisy")
    text = _message([c])
    assert "the loss is too noisy: it scatters by about" in text and "(noisy)" in text
    assert "average over seeds" in text


def test_a_loss_still_in_its_first_phase():
    # falling in a straight line and faster late than early: no power law with a floor >= 0 describes it
    c = _curve("cosine(peak=3e-4, warmup=200)", losses=lambda s: 4.0 - 1.5 * (s / T) ** 1.5, name="early")
    text = _message([c, _curve("constant(value=3e-4, warmup=200)", losses=lambda s: 4.0 - 1.4 * (s / T) ** 1.5)])
    assert "the loss is still falling too steadily to show where it levels off (the fitted floor L0 is at 0)" in text
    assert "train the runs longer" in text


def test_an_optimiser_that_did_not_converge():
    c = _curve("cosine(peak=3e-4, warmup=200)")
    text = _message([c], law="annealing", max_iter=1)
    assert "the optimiser did not converge (" in text and "give longer runs or more measurements" in text


# --- every forecasting command's --help shows an example ---------------------------------------------------

@pytest.mark.parametrize("argv", [["forecast"], ["forecast", "fit"], ["forecast", "predict"], ["forecast", "rank"],
                                  ["forecast", "optimize"], ["recommend"], ["list"], ["gallery"], ["report"],
                                  ["run"], ["bench"]])
def test_help_shows_an_example(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    examples = out[out.index("\nexamples"):]
    assert re.search(rf"^  cadence {' '.join(argv)}( |$)", examples, re.M), examples


# --- the README's sequence, end to end, at a smaller size ---------------------------------------------------

def readme_commands() -> list[list[str]]:
    """The commands of the README's forecasting block, as argument lists (comments and continuations resolved)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Forecasting"):]
    block = section[section.index("```bash\n") + 8:]
    block = block[:block.index("```")]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "cadence", line
            commands.append(words[1:])
    return commands


# What the README's sequence is: pilot runs, a fit, a ranking and an optimised schedule, in that order. A
# change to the README that changes a command or a flag fails here; only the numbers may differ.
SHAPE = [
    ("run", "tiny-lm", {"--size", "--lr", "--steps", "--eval-every", "--out"}),
    ("run", "tiny-lm", {"--size", "--lr", "--steps", "--eval-every", "--out"}),
    ("forecast fit", None, {"--from", "-o"}),
    ("forecast rank", None, {"--total", "--schedule"}),
    ("forecast optimize", None, {"--total", "--peak", "--warmup"}),
    ("recommend", None, {"--params", "--tokens", "--seq-len"}),
]


def _shape(argv: list[str]):
    name = " ".join(argv[:2]) if argv[0] == "forecast" else argv[0]
    flags = {w for w in argv if w.startswith("-")}
    first = argv[1] if argv[0] == "run" else None
    return name, first, flags


def test_readme_forecasting_block_is_the_tested_sequence():
    commands = readme_commands()
    assert [_shape(c) for c in commands] == SHAPE
    assert commands[2][2:4] == ["runs/constant", "runs/cosine"]
    outs = [c[c.index("--out") + 1] for c in commands[:2]]
    assert outs == ["runs/constant", "runs/cosine"]  # the fit reads what the pilot runs wrote
    assert all(c[2] == "law.json" for c in commands[3:5]) and commands[2][-1] == "law.json"


def _smaller(argv: list[str], steps: int, warmup: int) -> list[str]:
    """A README command at a smaller size: every run length becomes ``steps`` and every warmup ``warmup``."""
    out, it = [], iter(argv)
    for word in it:
        out.append(word)
        if word in ("--steps", "--total"):
            out.append(str(steps))
            next(it)
        elif word == "--from":
            out.append(str(steps // 3))
            next(it)
        elif word == "--warmup":
            out.append(str(warmup))
            next(it)
        elif word == "--eval-every":
            out.append(str(max(1, steps // 30)))
            next(it)
    return [re.sub(r"warmup=\d+", f"warmup={warmup}", w) for w in out]


def test_readme_sequence_runs_end_to_end_at_a_smaller_size(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    commands = readme_commands()
    steps, warmup = 150, 12
    for argv in commands[:5]:
        argv = _smaller(argv, steps, warmup)
        if argv[0] == "run":
            argv += ["--no-progress", "--threads", "1"]
        assert main(argv) == 0, (argv, capsys.readouterr())
    out = capsys.readouterr().out
    print(out)
    assert "law fitted to 2 run(s)" in out and "| 1 |" in out and "as a spec (predicted" in out
    assert (tmp_path / "law.json").is_file()


def test_fit_from_a_step_leaves_out_earlier_losses(tmp_path, capsys):
    lrs = S.parse("cosine(peak=3e-4, warmup=100)").values(T)
    losses = FittedLaw("annealing", ANNEAL, 3e-4).predict(lrs, np.arange(1, T))
    path = tmp_path / "run.csv"
    path.write_text("step,lr,loss\n0,0.0,\n" + "".join(f"{i},{float(lrs[i])!r},{float(losses[i - 1])!r}\n" for i in range(1, T)))
    law = tmp_path / "law.json"
    assert main(["forecast", "fit", str(path), "--law", "annealing", "--from", "1000", "-o", str(law)]) == 0
    out = capsys.readouterr().out
    assert "annealing law fitted to 1 run(s) from step 1000" in out
    assert main(["forecast", "fit", str(path), "--from", str(T), "-o", str(tmp_path / "other.json")]) == 2
    assert f"--from {T}: run has no loss measured at or after step {T} (its last is at step {T - 1})" in capsys.readouterr().err
