import json
import shutil

import pytest

from cadence.bench.compare import BenchConfig, run_bench
from cadence.bench.report import summarise, write_report
from cadence.bench.runner import train
from cadence.cli import main
from cadence.errors import CadenceError

CANDIDATES = {"cos": "cosine(peak=0.05, warmup=3)", "wsd": "wsd(peak=0.05, warmup=3, decay='30%')", "const": "constant(value=0.05)"}


def small(**kw):
    base = dict(workload="logreg", candidates=CANDIDATES, steps=30, seeds=2, eval_every=5, baseline="cos", checkpoint_every=10)
    base.update(kw)
    return BenchConfig(**base)


def test_report_on_a_tiny_matrix(tmp_path):
    result = run_bench(small(), tmp_path / "b", progress=False, log=lambda m: None)
    folder = tmp_path / "b"
    for name in ("report.md", "summary.csv", "loss.png", "val_loss.png", "bench.json"):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "loss.png").read_bytes()[:4] == b"\x89PNG"
    text = (folder / "report.md").read_text()
    assert "| cos |" in text.replace(" **best**", "") and "![training loss](loss.png)" in text
    rows = {r["candidate"]: r for r in result["rows"]}
    assert rows["cos"]["speedup"] == pytest.approx(1.0)
    s = summarise(folder)
    assert s["target"] == pytest.approx(sum(m["val_loss"][-1] for m in s["runs"]["cos"]) / 2)
    assert all(len(s["runs"][c]) == 2 for c in CANDIDATES)
    csv_lines = (folder / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("candidate,seeds,final_val_mean") and len(csv_lines) == 4


def test_explicit_target_and_unreached(tmp_path):
    result = run_bench(small(target=1e-6, seeds=1), tmp_path / "b", progress=False, log=lambda m: None)
    assert all(r["steps_to_target"] is None and r["reached"] == "0/1" for r in result["rows"])
    assert "| - | 0/1 | - |" in result["table"]


def test_rerun_skips_finished_runs_and_resumes_interrupted_ones(tmp_path):
    folder = tmp_path / "b"
    run_bench(small(), folder, progress=False, log=lambda m: None)
    reference = (folder / "runs" / "wsd" / "seed-1" / "metrics.csv").read_bytes()
    # a comparison killed mid-run: one run stopped between checkpoints with a torn last row, one never started
    shutil.rmtree(folder / "runs" / "const" / "seed-0")
    run = folder / "runs" / "wsd" / "seed-1"
    shutil.rmtree(run)
    cfg = next(c for name, seed, c in small().runs() if name == "wsd" and seed == 1)
    train(cfg, run, stop_after=17)  # checkpoint at 10, rows up to 16
    with open(run / "metrics.csv", "a") as f:
        f.write("17,1088,10")  # half a row, as a kill leaves it
    log = []
    run_bench(small(), folder, progress=False, log=log.append)
    assert "4 already finished, 2 to run" in log[0]
    assert (run / "metrics.csv").read_bytes() == reference


def test_parallel_jobs_give_the_same_numbers(tmp_path):
    run_bench(small(seeds=1), tmp_path / "serial", progress=False, log=lambda m: None)
    run_bench(small(seeds=1), tmp_path / "parallel", jobs=2, progress=False, log=lambda m: None)
    for name in CANDIDATES:
        a = (tmp_path / "serial" / "runs" / name / "seed-0" / "metrics.csv").read_bytes()
        b = (tmp_path / "parallel" / "runs" / name / "seed-0" / "metrics.csv").read_bytes()
        assert a == b


def test_other_settings_need_overwrite(tmp_path):
    folder = tmp_path / "b"
    run_bench(small(seeds=1), folder, progress=False, log=lambda m: None)
    with pytest.raises(CadenceError, match=r"other settings; replace it \(overwrite\)") as e:
        run_bench(small(seeds=1, steps=35), folder, progress=False, log=lambda m: None)
    assert e.value.field == "overwrite"
    (folder / "mine.txt").write_text("x")
    (folder / "runs" / "mine.txt").write_text("user's")  # a user's files among cadence's run folders
    (folder / "runs" / "wsd" / "seed-0" / "notes.md").write_text("user's")
    (folder / "runs" / "elsewhere").mkdir()
    said = []
    run_bench(small(seeds=1, steps=35, candidates={"cos": CANDIDATES["cos"]}), folder, overwrite=True, progress=False,
              log=lambda m: None, warn=said.append)
    assert (folder / "mine.txt").exists() and (folder / "runs" / "mine.txt").read_text() == "user's"
    assert (folder / "runs" / "elsewhere").is_dir()
    assert (folder / "runs" / "wsd" / "seed-0" / "notes.md").read_text() == "user's"
    assert sorted(p.name for p in (folder / "runs" / "wsd" / "seed-0").iterdir()) == ["notes.md"]
    assert not (folder / "runs" / "const").exists()
    assert "removed runs/const/seed-0 (a run of the comparison being replaced)" in said
    assert any(line.startswith("kept runs/wsd/seed-0") for line in said) and "removed report.md" in " ".join(said)
    assert json.loads((folder / "bench.json").read_text())["runs"] == ["runs/cos/seed-0"]
    with pytest.raises(CadenceError, match="holds no cadence comparison"):
        write_report(tmp_path)


def test_cli_bench_and_report(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["bench", "logreg", "--candidate", "lin=linear(peak=0.05)", "--candidate", "rex=rex(peak=0.05)", "--seeds", "1",
                 "--steps", "20", "--eval-every", "5", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "| lin" in printed and f"report: {out}/report.md" in printed
    assert main(["report", str(out)]) == 0
    assert "speed-up vs lin" in capsys.readouterr().out


def test_replacing_never_leaves_the_folder_whatever_bench_json_says(tmp_path):
    folder = tmp_path / "b"
    run_bench(small(seeds=1, candidates={"cos": CANDIDATES["cos"]}), folder, progress=False, log=lambda m: None)
    outside = tmp_path / "precious"
    (outside / "seed-0").mkdir(parents=True)
    (outside / "seed-0" / "metrics.csv").write_text("not cadence's")
    record = json.loads((folder / "bench.json").read_text())
    record["runs"] = ["runs/../../precious/seed-0", "/etc/seed-0"]  # tampered: not runs/<candidate>/seed-<n>
    record["config"]["steps"] = 31
    (folder / "bench.json").write_text(json.dumps(record))
    (folder / "runs" / "link").symlink_to(outside, target_is_directory=True)
    record["config"]["candidates"]["link"] = "constant(value=0.05)"
    record["runs"] = ["runs/link/seed-0"]
    (folder / "bench.json").write_text(json.dumps(record))
    said = []
    run_bench(small(seeds=1, candidates={"cos": CANDIDATES["cos"]}), folder, overwrite=True, progress=False,
              log=lambda m: None, warn=said.append)
    assert (outside / "seed-0" / "metrics.csv").read_text() == "not cadence's"
    assert "kept runs/link/seed-0: a symbolic link, not a folder cadence made" in said


def test_a_diverged_candidate_is_reported_not_fatal(tmp_path, capsys):
    out = tmp_path / "b"
    argv = ["bench", "digits", "--candidate", "ok=constant(value=0.01)", "--candidate", "boom=constant(value=1e6)",
            "--optimizer", "sgd", "--seeds", "1", "--steps", "20", "--eval-every", "5", "--out", str(out), "--no-progress"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("cadence: warning:")]
    assert len(warnings) == 1 and "boom seed 0 diverged at step" in warnings[0]
    manifest = json.loads((out / "runs" / "boom" / "seed-0" / "run.json").read_text())
    at = manifest["diverged_at"]
    assert manifest["status"] == "diverged"
    report = (out / "report.md").read_text()
    assert f"| boom | diverged at step {at} | - | - | 0/1 | - |" in report
    assert f"`boom` seed 0 at step {at}" in report and "| ok **best** |" in report
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].endswith(",diverged,diverged_at") and summary[2].startswith("boom,0,,,,,")
    # running it again does not retry the diverged runs, and still writes the report
    assert main(argv[:-1]) == 0  # with its progress lines
    assert "2 runs (2 candidates x 1 seeds), 2 already finished, 0 to run" in capsys.readouterr().err


def test_baseline_diverged_leaves_no_target(tmp_path):
    candidates = {"boom": "constant(value=1e6)", "ok": "constant(value=0.01)"}
    result = run_bench(small(workload="digits", candidates=candidates, baseline=None, optimizer="sgd", seeds=1, steps=20),
                       tmp_path / "b", progress=False,
                       log=lambda m: None, warn=lambda m: None)
    assert result["target"] is None and result["diverged"] == [{"candidate": "boom", "seed": 0}]
    assert "Target validation loss: none (every run of the baseline `boom` diverged)" in (tmp_path / "b" / "report.md").read_text()


def _as_format_1(record: dict) -> dict:
    """A bench.json as the previous release wrote it: format cadence.bench/1, the candidates under "plans"."""
    config = {("plans" if k == "candidates" else k): v for k, v in record["config"].items()}
    return {**record, "format": "cadence.bench/1", "config": config}


TAMPERED_BENCH = [
    (lambda r: [r], "not a cadence comparison record"),
    (lambda r: {**r, "config": {**r["config"], "seeds": "2"}}, "seeds must be a positive whole number"),
    (lambda r: {**r, "config": {**r["config"], "seeds": 10**12}}, "at most 1000"),
    (lambda r: {**r, "config": {**r["config"], "candidates": ["cos"]}}, "give at least one candidate"),
    (lambda r: {**r, "config": {**r["config"], "candidates": {"../x": "cosine(peak=1)"}}}, "candidate name '../x'"),
    (lambda r: {**r, "config": {**r["config"], "plans": r["config"]["candidates"]}}, "unknown plans"),  # plans is /1's
    (lambda r: _as_format_1(r) | {"config": {**_as_format_1(r)["config"], "plans": {"../x": "cosine(peak=1)"}}},
     "candidate name '../x'"),
    (lambda r: {**r, "config": {**r["config"], "steps": None}}, "config.steps must be a positive whole number"),
    (lambda r: {**r, "config": {**r["config"], "target": "low"}}, "target must be a finite number"),
    (lambda r: {**r, "config": {**r["config"], "wat": 1}}, "unknown wat"),
    (lambda r: "[" * 50_000, "nested too deeply"),
]


@pytest.mark.parametrize("tamper, fragment", TAMPERED_BENCH, ids=[str(i) for i in range(len(TAMPERED_BENCH))])
def test_report_of_a_tampered_comparison_is_one_line(tamper, fragment, finished_bench, tmp_path, capsys):
    folder = tmp_path / "b"
    shutil.copytree(finished_bench, folder)
    result = tamper(json.loads((folder / "bench.json").read_text()))
    (folder / "bench.json").write_text(result if isinstance(result, str) else json.dumps(result))
    code = main(["report", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err, err


def _row(n, change):
    def damage(text):
        lines = text.splitlines(keepends=True)
        lines[n] = change(lines[n])
        return "".join(lines)
    return damage


@pytest.mark.parametrize("damage, fragment", [
    (_row(3, lambda line: line.replace(",", ",x", 2)), "row 3 holds 'x"),
    (_row(5, lambda line: "1,2\n"), "row 5 has 2 values"),
    (lambda text: "\n".join(text.splitlines()[:1] + text.splitlines()[1:] * 2) + "\n", "has 40 rows; the run has only 20"),
    (lambda text: text.replace("val_loss", "val_lost"), "has no val_loss column"),
])
def test_report_of_damaged_metrics_is_one_line(damage, fragment, finished_bench, tmp_path, capsys):
    folder = tmp_path / "b"
    shutil.copytree(finished_bench, folder)
    metrics = folder / "runs" / "lin" / "seed-0" / "metrics.csv"
    metrics.write_text(damage(metrics.read_text()))
    code = main(["report", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err, err


@pytest.fixture(scope="module")
def finished_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b"
    assert main(["bench", "logreg", "--candidate", "lin=linear(peak=0.05)", "--seeds", "1", "--steps", "20",
                 "--eval-every", "5", "--out", str(out), "--no-progress"]) == 0
    return out


def test_a_comparison_written_by_the_previous_release_is_read_resumed_and_replaced(tmp_path, capsys):
    folder = tmp_path / "b"
    run_bench(small(seeds=1), folder, progress=False, log=lambda m: None)
    record = json.loads((folder / "bench.json").read_text())
    assert record["format"] == "cadence.bench/2" and list(record["config"])[:2] == ["workload", "candidates"]
    old = _as_format_1(record)
    (folder / "bench.json").write_text(json.dumps(old))
    (folder / "report.md").unlink()
    assert main(["report", str(folder)]) == 0  # read: the report of an old folder
    assert "| candidate |" in (folder / "report.md").read_text()
    assert [r["candidate"] for r in summarise(folder)["rows"]] == list(CANDIDATES)
    log = []
    run_bench(small(seeds=1), folder, progress=False, log=log.append)  # resumed: the same comparison
    assert "3 runs (3 candidates x 1 seeds), 3 already finished, 0 to run" in log[0]
    assert json.loads((folder / "bench.json").read_text()) == record  # now in the new format
    # replaced: an old bench.json (this one from before the "runs" list) says which run folders were cadence's
    (folder / "bench.json").write_text(json.dumps({k: v for k, v in old.items() if k != "runs"}))
    with pytest.raises(CadenceError, match="other settings"):
        run_bench(small(seeds=1, steps=35), folder, progress=False, log=lambda m: None)
    said = []
    run_bench(small(seeds=1, steps=35, candidates={"cos": CANDIDATES["cos"]}), folder, overwrite=True,
              progress=False, log=lambda m: None, warn=said.append)
    assert "removed runs/wsd/seed-0 (a run of the comparison being replaced)" in said
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["cos"]
    assert json.loads((folder / "bench.json").read_text())["config"]["candidates"] == {"cos": CANDIDATES["cos"]}


PLAN_WARNING = "cadence: warning: bench --plan is now --candidate; --plan will be removed\n"


def test_plan_is_a_deprecated_alias_of_candidate(tmp_path, capsys):
    base = ["bench", "logreg", "--seeds", "1", "--steps", "20", "--eval-every", "5"]
    assert main([*base, "--candidate", "lin=linear(peak=0.05)", "--candidate", "rex=rex(peak=0.05)",
                 "--out", str(tmp_path / "new"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    # --plan and --candidate mix, in command-line order; one warning line however often --plan is given
    assert main([*base, "--plan", "lin=linear(peak=0.05)", "--candidate", "rex=rex(peak=0.05)",
                 "--out", str(tmp_path / "old"), "--no-progress"]) == 0
    assert capsys.readouterr().err == PLAN_WARNING
    for name in ("bench.json", "summary.csv", "runs/lin/seed-0/metrics.csv", "runs/rex/seed-0/metrics.csv"):
        assert (tmp_path / "old" / name).read_bytes() == (tmp_path / "new" / name).read_bytes(), name
    assert main([*base, "--plan", "lin=linear(peak=0.05)", "--plan", "rex=rex(peak=0.05)",
                 "--out", str(tmp_path / "old")]) == 0  # with progress lines: the warning comes first
    err = capsys.readouterr().err
    assert err.startswith(PLAN_WARNING) and err.count("--plan") == 2 and "2 already finished" in err
    # input it refuses ends in one line, the error
    assert main([*base, "--plan", "bad name=linear(peak=0.05)", "--out", str(tmp_path / "bad")]) == 2
    assert capsys.readouterr().err.startswith("cadence: error: --candidate: candidate name 'bad name'")
    assert main([*base, "--plan", "a=linear(peak=0.05)", "--baseline", "b", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--baseline: 'b' is not one of the candidates (a)" in err
