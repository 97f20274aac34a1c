import json
import shutil

import pytest

from cadence.bench.compare import BenchConfig, run_bench
from cadence.bench.report import summarise, write_report
from cadence.bench.runner import train
from cadence.cli import main
from cadence.errors import CadenceError

PLANS = {"cos": "cosine(peak=0.05, warmup=3)", "wsd": "wsd(peak=0.05, warmup=3, decay='30%')", "const": "constant(value=0.05)"}


def small(**kw):
    base = dict(workload="logreg", plans=PLANS, steps=30, seeds=2, eval_every=5, baseline="cos", checkpoint_every=10)
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
    rows = {r["plan"]: r for r in result["rows"]}
    assert rows["cos"]["speedup"] == pytest.approx(1.0)
    s = summarise(folder)
    assert s["target"] == pytest.approx(sum(m["val_loss"][-1] for m in s["runs"]["cos"]) / 2)
    assert all(len(s["runs"][p]) == 2 for p in PLANS)
    csv_lines = (folder / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("plan,seeds,final_val_mean") and len(csv_lines) == 4


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
    assert "4 already complete, 2 to run" in log[0]
    assert (run / "metrics.csv").read_bytes() == reference


def test_parallel_jobs_give_the_same_numbers(tmp_path):
    run_bench(small(seeds=1), tmp_path / "serial", progress=False, log=lambda m: None)
    run_bench(small(seeds=1), tmp_path / "parallel", jobs=2, progress=False, log=lambda m: None)
    for plan in PLANS:
        a = (tmp_path / "serial" / "runs" / plan / "seed-0" / "metrics.csv").read_bytes()
        b = (tmp_path / "parallel" / "runs" / plan / "seed-0" / "metrics.csv").read_bytes()
        assert a == b


def test_other_settings_need_overwrite(tmp_path):
    folder = tmp_path / "b"
    run_bench(small(seeds=1), folder, progress=False, log=lambda m: None)
    with pytest.raises(CadenceError, match="other settings; pass --overwrite"):
        run_bench(small(seeds=1, steps=35), folder, progress=False, log=lambda m: None)
    (folder / "mine.txt").write_text("x")
    run_bench(small(seeds=1, steps=35), folder, overwrite=True, progress=False, log=lambda m: None)
    assert (folder / "mine.txt").exists()
    with pytest.raises(CadenceError, match="holds no cadence comparison"):
        write_report(tmp_path)


def test_cli_bench_and_report(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["bench", "logreg", "--plan", "lin=linear(peak=0.05)", "--plan", "rex=rex(peak=0.05)", "--seeds", "1",
                 "--steps", "20", "--eval-every", "5", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "| lin" in printed and f"report: {out}/report.md" in printed
    assert main(["report", str(out)]) == 0
    assert "speed-up vs lin" in capsys.readouterr().out
