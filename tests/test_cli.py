import subprocess
import sys

import numpy as np
import pytest

from cadence import schedules as S
from cadence.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_csv_matches_values(capsys):
    spec = "wsd(peak=3e-4, warmup=20, decay='20%', shape='1-sqrt')"
    code, out, err = run(capsys, "schedule", spec, "--total", "200", "--csv")
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0] == "step,value" and len(lines) == 201
    steps, values = zip(*(line.split(",") for line in lines[1:]))
    assert list(map(int, steps)) == list(range(200))
    assert np.array_equal(np.array(values, dtype=float), S.parse(spec).values(200))  # repr: exact round trip


def test_summary_without_flags(capsys):
    code, out, _ = run(capsys, "schedule", "cosine(peak=1.0, warmup=10)", "--total", "100")
    assert code == 0 and "max: 1 (step 10)" in out and "cosine(peak=1.0" in out


def test_list_shows_every_family_with_parameters(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for cls in S.FAMILIES + S.COMBINATORS:
        assert f"  {cls.name}(" in out
    assert "wsd(peak, warmup, decay, final, shape)" in out
    assert "final + (peak-final)*(1-p)/(1-p/2)" in out


def test_plot_writes_and_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "lr.png"
    args = ["schedule", "power(peak=0.02, a=4.6, b=-0.51, warmup='1%')", "--total", "500",
            "--samples-per-step", "64", "--tokens-per-sample", "256", "--unit", "tok", "--plot", str(path)]
    assert run(capsys, *args)[0] == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = path.read_bytes()
    code, _, err = run(capsys, *args)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert path.read_bytes() == before
    assert run(capsys, *args, "--overwrite")[0] == 0


def test_gallery(tmp_path, capsys):
    path = tmp_path / "g.png"
    code, out, _ = run(capsys, "gallery", "--out", str(path), "--total", "300")
    assert code == 0 and path.stat().st_size > 10_000 and str(path) in out
    assert not list(tmp_path.glob(".g.png*"))  # no temp file left behind


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["schedule", "cosine(peak=-1)", "--total", "10"], "peak must be >= 0"),
        (["schedule", "cosine(peak=nan)", "--total", "10"], "may not name variables"),
        (["schedule", "wsd(peak=1, warmup=8, decay=5)", "--total", "10"], "longer than the run"),
        (["schedule", "wsd(peak=1, decay='2Mtok')", "--total", "10"], "tokens"),
        (["schedule", "wsd(peak=1, decay='0%')", "--total", "10"], "outside (0, 1]"),
        (["schedule", "wsd(peak=1, decay='5lightyears')", "--total", "10"], "unknown unit"),
        (["schedule", "cosinus(peak=1)", "--total", "10"], "unknown schedule family"),
        (["schedule", "cosine(peak=1)", "--total", "-5"], "--total"),
        (["schedule", "cosine(peak=1)"], "--total"),
        (["schedule", "cosine(peak=1)", "--total", "10", "--plot", "x.txt"], ".png"),
        (["schedule", "cosine(peak=1)", "--total", "10", "--plot", "/no/such/dir/x.png"], "does not exist"),
        (["schedule", "cosine(peak=1)", "--total", "10", "--unit", "tok", "--plot", "y.png"], "tokens"),
        (["frobnicate"], "invalid choice"),
        (["bench", "logreg", "--candidate", "a=cosine(peak=1)", "--candidate", "a=linear(peak=1)"],
         "--candidate: name 'a' is given twice"),
        (["bench", "logreg", "--out", "b"], "give at least one --candidate NAME=SPEC"),
        (["bench", "tiny-lm", "--quick", "--candidate", "a=cosine(peak=1)"], "--quick brings its own candidates"),
        (["bench", "logreg", "--plan", "a", "--out", "b"], "--candidate expects NAME=SPEC"),  # --plan: an alias
        (["bench", "logreg", "--plan", "a=cosine(peak=1)", "--plan", "b=linear(peak=1)", "--baseline", "c", "--out", "b"],
         "--baseline: 'c' is not one of the candidates (a, b)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("cadence: error: ") and err.count("\n") == 1
    assert fragment in err
    assert "Traceback" not in err


def test_console_script_never_shows_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "cadence.cli", "schedule", "__import__('os').system('echo hi')",
                           "--total", "5"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("cadence: error:") and "Traceback" not in proc.stderr
    assert "hi" not in proc.stdout


# -- hardening (issue 9) ---------------------------------------------------------------------------
def test_huge_totals_are_refused_before_anything_is_printed(capsys):
    code, out, err = run(capsys, "schedule", "cosine(peak=1.0)", "--total", str(2**63), "--csv")
    assert code == 2 and out == "" and err.startswith("cadence: error: --total:") and "2**53" in err  # was: header, exit 0
    from cadence.schedules.limits import MAX_VALUES
    code, out, err = run(capsys, "schedule", "cosine(peak=1.0)", "--total", str(MAX_VALUES + 1), "--csv")
    assert code == 2 and out == "" and f"at most {MAX_VALUES} rows" in err


def test_the_summary_of_a_huge_run_is_sampled_and_says_so(capsys):
    code, out, err = run(capsys, "schedule", "cosine(peak=1.0, warmup=10)", "--total", str(10**12))  # was 7.28 TiB
    assert code == 0 and err == ""
    assert "steps: 1000000000000   first: 0" in out and "evenly spaced steps" in out


def test_csv_is_streamed_in_chunks_with_the_same_numbers(capsys):
    from cadence.schedules.limits import CHUNK

    total = CHUNK + 17
    spec = "sgdr(peak=1.0, period=1000, mult=1.5)"
    code, out, _ = run(capsys, "schedule", spec, "--total", str(total), "--csv")
    lines = out.splitlines()
    assert code == 0 and len(lines) == total + 1 and lines[CHUNK + 1].startswith(f"{CHUNK},")
    assert np.array_equal(np.array([line.split(",")[1] for line in lines[1:]], dtype=float), S.parse(spec).values(total))


def test_plot_of_a_huge_run_is_drawn_from_a_sample(tmp_path, capsys):
    path = tmp_path / "long.png"
    code, out, _ = run(capsys, "schedule", "wsd(peak=1.0, warmup='1%')", "--total", str(10**13), "--plot", str(path))
    assert code == 0 and path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["schedule", "cosine(peak=" + "9" * 400 + ")", "--total", "10"], "must be finite"),  # was OverflowError
        (["schedule", "cosine(warmup=" + "9" * 400 + ")", "--total", "10"], "2**53"),
        (["schedule", "cosine(peak='\udc80')", "--total", "10"], "lone surrogate"),  # was UnicodeEncodeError
        (["schedule", "exponential(factor=8)", "--total", "1000", "--csv"], "gives inf at step 342"),
        (["schedule", "cosine(peak=1.7976931348623157e308)", "--total", "10"], "must be finite"),
        (["schedule", "clip(constant(), ceiling=-1)", "--total", "10"], "ceiling must be >= 0"),
        (["schedule", "cyclic(up='1tok')", "--total", "10", "--samples-per-step", "1e-200", "--tokens-per-sample", "1e-200"],
         "tokens per step"),  # was ZeroDivisionError
        (["schedule", "sgdr(period=1, mult=1.0000001)", "--total", "10000000"], "restarts"),  # was 4.35 GB
        (["schedule", "warmup(" * 40 + "constant()" + ")" * 40, "--total", "10"], "at most 32 levels"),
        (["schedule", "cosine(peak=1)", "--total", "10", "--plot", "dir.png"], "is a folder"),
        (["schedule", "cosine(peak=1)", "--total", "10", "--plot", "file.txt/x.png"], "does not exist"),
        (["schedule", "cosine(peak=1)", "--total", "10", "--plot", "a\0.png"], "NUL"),
        (["schedule", "cosine(peak=1)", "--total", "10", "--plot", "x" * 300 + ".png"], "File name too long"),
        (["gallery", "--out", "x" * 300 + ".png"], "File name too long"),  # was OSError from stat()
        (["gallery", "--total", str(2**60)], "2**53"),
        (["gallery", "--total", "3"], "at least 1 step"),
    ],
)
def test_inputs_that_used_to_escape_are_one_line_errors(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "file.txt").write_text("x")
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("cadence: error: ") and err.count("\n") == 1 and fragment in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "file.txt"]  # nothing written
