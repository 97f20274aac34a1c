"""Turn a comparison folder into a report: table, figures, and a machine-readable summary.

Everything is measured on the comparison's clock: steps, or samples or tokens when the runs
count those (a batch that changes makes steps of unequal size, so candidates are compared at
equal samples or tokens, and the figures are drawn against them).

* Final loss: the validation loss at the horizon (the last step; measured on the same
  held-out set for every run), mean ± standard deviation over seeds; also the training loss
  averaged over the last 5% of the run (of its steps, samples or tokens).
* Steps (samples, tokens) to target: where the clock stood at the first evaluation at which
  a run's validation loss is at or below the target (default: the baseline candidate's mean
  final validation loss), averaged over the seeds that reach it. Speed-up: the baseline's
  figure divided by the candidate's.
* Domains (a workload whose metrics.csv has ``val_loss/<domain>`` columns, such as ``text``):
  each domain's final validation loss, their mean, and the worst domain (the one whose final
  loss, averaged over seeds, is highest) with its loss, each mean ± standard deviation over
  seeds; figures of each domain's validation loss (``val_loss_domains.png``) and of each
  candidate's mixture weights ``mixture/<domain>`` stacked (``mixture.png``). A comparison
  without domains gets none of these: its report is what it was before.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cadence._atomic import atomic_write
from cadence.errors import CadenceError, RunError

__all__ = ["load_metrics", "write_report", "summarise"]


def load_metrics(path: "str | Path", max_rows: int | None = None) -> dict[str, np.ndarray]:
    """metrics.csv as columns of floats (NaN where a value was not measured).

    A last line without its newline (a row a kill cut short) is left out. Anything else that
    is not a number, a row of the wrong length, or more than ``max_rows`` rows is a CadenceError.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RunError(f"{path} is not a metrics file: it is not UTF-8 text") from None
    lines = text.split("\n")[:-1]  # the last piece is '' or a torn row
    if max_rows is not None and len(lines) > max_rows + 1:
        raise RunError(f"{path} has {len(lines) - 1} rows; the run has only {max_rows} steps (edited?)")
    if len(lines) < 2:
        raise RunError(f"{path} has no rows")
    try:
        rows = list(csv.reader(lines))
    except csv.Error as e:
        raise RunError(f"{path} is not a metrics file ({e})") from None
    header, body = rows[0], rows[1:]
    if "step" not in header or len(set(header)) != len(header):
        raise RunError(f"{path} is not a metrics file: its header has no 'step' column or repeats a name")
    data = np.empty((len(body), len(header)), dtype=np.float64)
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise RunError(f"{path}: row {i + 1} has {len(row)} values, the header {len(header)}")
        try:
            data[i] = [float(v) if v != "" else math.nan for v in row]
        except ValueError:
            bad = next(v for v in row if v != "" and not _is_number(v))
            raise RunError(f"{path}: row {i + 1} holds {bad[:40]!r}, which is not a number") from None
    return {name: data[:, i] for i, name in enumerate(header)}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _mean_std(xs: list[float]) -> tuple[float, float]:
    a = np.array(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


# The metrics.csv column that counts each unit (after the row's step), and its name on a figure.
_COUNTER = {"step": "step", "sample": "samples", "token": "tokens"}


def _position(m: dict[str, np.ndarray], unit: str) -> np.ndarray:
    """Where the clock stands after each row's step, in the comparison's unit."""
    return m["step"] + 1 if unit == "step" else m[_COUNTER[unit]]


def _to_target(m: dict[str, np.ndarray], target: float, unit: str) -> "tuple[float, float] | None":
    """(units, steps) at the first evaluation at or below ``target``, or None."""
    hit = np.flatnonzero(m["val_loss"] <= target)
    if len(hit) == 0:
        return None
    return float(_position(m, unit)[hit[0]]), float(m["step"][hit[0]] + 1)


def _diverged_at(run_dir: Path) -> int | None:
    """The step at which the run in ``run_dir`` diverged, or None (no run.json, or not diverged)."""
    from cadence.bench.runner import _read_json

    path = run_dir / "run.json"
    if not os.path.lexists(path):
        return None
    data = _read_json(path, "cadence run manifest")
    if not isinstance(data, dict) or data.get("status") != "diverged":
        return None
    at = data.get("diverged_at")
    if isinstance(at, bool) or not isinstance(at, int):
        raise RunError(f"{path}: a diverged run must record diverged_at as a whole number; got {str(at)[:40]!r}")
    return at


_COLUMNS = ("step", "lr", "train_loss", "val_loss")


def _finished(m: dict[str, np.ndarray], path: Path, unit: str, horizon: int) -> bool:
    """Whether a run's rows reach the horizon; rows past it (an edited file) are an error."""
    if unit == "step":
        return len(m["step"]) == horizon  # load_metrics refused more rows
    reached = np.flatnonzero(m[_COUNTER[unit]] >= horizon)
    if len(reached) and reached[0] != len(m["step"]) - 1:
        raise RunError(f"{path} has rows after the clock reached the horizon ({horizon} {unit}s); the run ends there "
                       "(edited?)")
    return len(reached) > 0


_DOMAIN = "val_loss/"  # metrics.csv: a domain's validation loss column is val_loss/<domain>
_MIXTURE = "mixture/"  # and the weight each step gave it, mixture/<domain>


def _domains(runs: dict[str, list[dict]], prefix: str = _DOMAIN) -> list[str]:
    """The domains named by any run's ``<prefix><domain>`` columns, in the order the runs name them."""
    seen: dict[str, None] = {}
    for ms in runs.values():
        for m in ms:
            for column in m:
                if column.startswith(prefix) and len(column) > len(prefix):
                    seen.setdefault(column[len(prefix):], None)
    return list(seen)


def _domain_rows(rows: list[dict], runs: dict[str, list[dict]], domains: list[str]) -> None:
    """Each row gains its final validation loss per domain, their mean and the worst domain (mean ± std over seeds).

    A run's final loss in a domain is ``val_loss/<domain>`` at its last row (as the final val loss is
    ``val_loss`` there); the mean is over the domains the run measured. The worst domain is the one
    whose final loss, averaged over the seeds, is highest; its loss is that domain's, mean ± std.
    """
    for r in rows:
        ms = runs[r["candidate"]]
        finals = {d: [float(m[_DOMAIN + d][-1]) for m in ms if _DOMAIN + d in m] for d in domains}
        finals = {d: xs for d, xs in finals.items() if xs}
        r["domain_final"] = {d: _mean_std(xs) for d, xs in finals.items()}
        means = [float(np.mean([m[_DOMAIN + d][-1] for d in domains if _DOMAIN + d in m])) for m in ms
                 if any(_DOMAIN + d in m for d in domains)]
        r["domain_mean"] = _mean_std(means) if means else None
        worst = max(r["domain_final"], key=lambda d: r["domain_final"][d][0], default=None)
        r["worst_domain"] = worst
        r["worst_val"] = r["domain_final"][worst] if worst is not None else None


def summarise(folder: "str | Path") -> dict:
    from cadence.bench.compare import BenchConfig
    from cadence.bench.runner import _read_json

    folder = Path(folder)
    bench_file = folder / "bench.json"
    if not bench_file.is_file():
        raise RunError(f"{folder} holds no cadence comparison (no bench.json)")
    config = BenchConfig.from_record(_read_json(bench_file, "cadence comparison record"), bench_file)
    try:
        unit, horizon = config.axis()
    except CadenceError as e:
        raise RunError(f"{bench_file}: {' '.join(str(e).split())}") from None
    bench = asdict(config)
    candidates = list(bench["candidates"])
    columns = _COLUMNS if unit == "step" else (*_COLUMNS, _COUNTER[unit])
    runs: dict[str, list[dict]] = {}
    diverged: dict[str, list[tuple[int, int]]] = {}
    for name in candidates:
        runs[name], diverged[name] = [], []
        for seed in range(bench["seeds"]):
            run_dir = folder / "runs" / name / f"seed-{seed}"
            at = _diverged_at(run_dir)
            if at is not None:
                diverged[name].append((seed, at))
                continue
            path = run_dir / "metrics.csv"
            if not path.is_file():
                continue
            m = load_metrics(path, max_rows=horizon if unit == "step" else None)
            lacking = [c for c in columns if c not in m]
            if lacking:
                raise RunError(f"{path} has no {', '.join(lacking)} column(s)")
            if _finished(m, path, unit, horizon):
                runs[name].append(m)
    missing = [n for n in candidates if not runs[n] and not diverged[n]]
    if missing:
        raise RunError(f"no finished runs for candidate(s) {', '.join(missing)} in {folder}; run the comparison first")
    baseline = bench.get("baseline") or candidates[0]
    final = {n: [float(m["val_loss"][-1]) for m in runs[n]] for n in candidates}
    target = bench.get("target")
    if target is None and final[baseline]:
        target = float(np.mean(final[baseline]))
    rows = []
    for n in candidates:
        hits = [_to_target(m, target, unit) for m in runs[n]] if target is not None else []
        reached = [h for h in hits if h is not None]
        tried = len(runs[n]) + len(diverged[n])
        spec = bench["candidates"][n]
        rows.append({
            "candidate": n, "spec": spec if isinstance(spec, str) else f"plan file {spec['file']}", "seeds": len(runs[n]),
            "final_val": _mean_std(final[n]) if runs[n] else None,
            "final_train": _mean_std([_final_train(m, unit, horizon) for m in runs[n]]) if runs[n] else None,
            "to_target": float(np.mean([u for u, _ in reached])) if reached else None,
            "steps_to_target": float(np.mean([s for _, s in reached])) if reached else None,
            "reached": f"{len(reached)}/{tried}" if target is not None else "-",
            "steps": float(np.mean([len(m["step"]) for m in runs[n]])) if runs[n] else None,
            "diverged": diverged[n],
        })
    base = next(r for r in rows if r["candidate"] == baseline)
    for r in rows:
        s, b = r["to_target"], base["to_target"]
        r["speedup"] = (b / s) if (s and b) else None
    domains = _domains(runs)
    if domains:
        _domain_rows(rows, runs, domains)
    return {"workload": bench["workload"], "steps": horizon if unit == "step" else None, "unit": unit,
            "horizon": horizon, "baseline": baseline, "target": target, "rows": rows, "runs": runs, "bench": bench,
            "domains": domains}


def _final_train(m: dict[str, np.ndarray], unit: str, horizon: int) -> float:
    """The training loss over the last 5% of the run: of its steps on a step clock, else of its samples or tokens."""
    if unit == "step":
        return float(np.mean(m["train_loss"][-max(1, horizon // 20):]))
    late = _position(m, unit) > 0.95 * horizon
    late[-1] = True
    return float(np.mean(m["train_loss"][late]))


def _diverged_steps(r: dict) -> str:
    return ", ".join(str(s) for s in sorted({at for _, at in r["diverged"]}))


def _table(summary: dict) -> str:
    unit = summary["unit"]
    counted = unit != "step"  # a clock of samples or tokens: also how many optimizer steps each took
    lines = [
        f"| candidate | final val loss | final train loss | {unit}s to target | reached | speed-up vs "
        f"{summary['baseline']} |" + (" steps |" if counted else ""),
        "|---|---|---|---|---|---|" + ("---|" if counted else ""),
    ]
    finished = [r["final_val"][0] for r in summary["rows"] if r["final_val"] is not None]
    best = min(finished) if finished else None
    for r in summary["rows"]:
        if r["final_val"] is None:
            lines.append(f"| {r['candidate']} | diverged at step {_diverged_steps(r)} | - | - | {r['reached']} | - |"
                         + (" - |" if counted else ""))
            continue
        v, s = r["final_val"]
        mark = " **best**" if v == best else ""
        if r["diverged"]:
            mark += f" ({len(r['diverged'])}/{len(r['diverged']) + r['seeds']} diverged at step {_diverged_steps(r)})"
        stt = "-" if r["to_target"] is None else f"{r['to_target']:.0f}"
        sp = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(f"| {r['candidate']}{mark} | {v:.4f} ± {s:.4f} | {r['final_train'][0]:.4f} ± {r['final_train'][1]:.4f} "
                     f"| {stt} | {r['reached']} | {sp} |" + (f" {r['steps']:.0f} |" if counted else ""))
    return "\n".join(lines)


def _domain_table(summary: dict) -> str:
    """Per candidate: the final loss averaged over domains, the worst domain and its loss, then each domain's."""
    domains = summary["domains"]
    lines = ["| candidate | mean over domains | worst domain | worst-domain loss | "
             + " | ".join(f"`{d}`" for d in domains) + " |",
             "|---|---|---|---|" + "---|" * len(domains)]

    def cell(pair):
        return "-" if pair is None else f"{pair[0]:.4f} ± {pair[1]:.4f}"

    for r in summary["rows"]:
        if r.get("domain_mean") is None:  # every run diverged
            lines.append(f"| {r['candidate']} | - | - | - | " + " | ".join("-" for _ in domains) + " |")
            continue
        lines.append(f"| {r['candidate']} | {cell(r['domain_mean'])} | "
                     f"{'-' if r['worst_domain'] is None else '`' + r['worst_domain'] + '`'} | {cell(r['worst_val'])} | "
                     + " | ".join(cell(r["domain_final"].get(d)) for d in domains) + " |")
    return "\n".join(lines)


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average starting at x[0]: acc_i = a*x_i + (1-a)*acc_(i-1)."""
    from scipy.signal import lfilter

    alpha = 2.0 / (span + 1)
    out, _ = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[(1.0 - alpha) * x[0]])
    return out


def _on(x0: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``y`` (measured at ``x``) at the positions ``x0``: the same array when the positions are the same, else
    interpolated, so that seeds whose steps differ in length are compared at equal samples or tokens."""
    if len(x) == len(x0) and np.array_equal(x, x0):
        return y
    return np.interp(x0, x, y)


def _figures(summary: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if summary["runs"][r["candidate"]]]  # a candidate whose every run diverged has no curve
    if not rows:
        return []
    unit, horizon = summary["unit"], summary["horizon"]
    counted = unit != "step"
    xlabel = _COUNTER[unit]
    span = max(5, min(len(m["step"]) for r in rows for m in summary["runs"][r["candidate"]]) // 50)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    made = []

    def train_x(m):  # a step clock keeps the step index (as before); samples and tokens: the count after the step
        return m["step"] if not counted else m[xlabel]

    def curves(name):
        runs = summary["runs"][name]
        x = train_x(runs[0])
        return x, np.array([_on(x, train_x(m), _ema(m["train_loss"], span)) for m in runs])

    batch = any("batch" in m for r in rows for m in summary["runs"][r["candidate"]])
    fig, axes = plt.subplots(1, 3 if batch else 2, figsize=(19 if batch else 13, 4.6))
    half = int(horizon * 0.5) if not counted else horizon * 0.5
    tails = []
    for ax, start in zip(axes, (0, half)):
        lr_ax = ax.twinx()
        for i, row in enumerate(rows):
            runs = summary["runs"][row["candidate"]]
            x, ys = curves(row["candidate"])
            mean, lo, hi = ys.mean(0), ys.min(0), ys.max(0)
            c = colors[i % len(colors)]
            sl = x >= start
            ax.plot(x[sl], mean[sl], color=c, lw=1.6, label=row["candidate"])
            if len(runs) > 1:
                ax.fill_between(x[sl], lo[sl], hi[sl], color=c, alpha=0.2, lw=0)
            lr_ax.plot(x[sl], runs[0]["lr"][sl], color=c, lw=0.9, ls="--", alpha=0.7)
            if start:
                tails.append(ys[:, sl].ravel())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"train loss (EMA over {span} steps)")
        lr_ax.set_ylabel("learning rate (dashed)")
        ax.grid(alpha=0.3)
        ax.set_title("whole run" if start == 0 else "second half")
        if start and tails:
            tail = np.concatenate(tails)
            ax.set_ylim(np.percentile(tail, 0.5) - 0.02, np.percentile(tail, 99.5) + 0.02)
    if batch:
        ax = axes[2]
        for i, row in enumerate(rows):
            m = summary["runs"][row["candidate"]][0]
            values = m["batch"] if "batch" in m else np.full(len(m["step"]), np.nan)
            ax.plot(train_x(m), values, color=colors[i % len(colors)], lw=1.6, drawstyle="steps-post",
                    label=row["candidate"])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("batch (samples per step)")
        ax.grid(alpha=0.3)
        ax.set_title("batch size (seed 0)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{summary['workload']}: training loss (band: min-max over seeds), LR on the right axis"
                 + (f"; against {xlabel}" if counted else ""))
    fig.tight_layout()
    atomic_write(folder / "loss.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    made.append("loss.png")

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for i, row in enumerate(rows):
        runs = summary["runs"][row["candidate"]]
        masks = [~np.isnan(m["val_loss"]) for m in runs]
        x = _position(runs[0], unit)[masks[0]]
        vals = np.array([_on(x, _position(m, unit)[k], m["val_loss"][k]) for m, k in zip(runs, masks)])
        c = colors[i % len(colors)]
        ax.plot(x, vals.mean(0), color=c, lw=1.6, marker=".", ms=3, label=row["candidate"])
        if len(runs) > 1:
            ax.fill_between(x, vals.min(0), vals.max(0), color=c, alpha=0.2, lw=0)
    if summary["target"] is not None:
        ax.axhline(summary["target"], color="k", lw=0.8, ls=":", label=f"target {summary['target']:.4f}")
    lo = min(np.nanmin(m["val_loss"]) for rs in summary["runs"].values() for m in rs)
    ax.set_ylim(lo - 0.05 * abs(lo), np.nanpercentile(
        np.concatenate([m["val_loss"] for rs in summary["runs"].values() for m in rs]), 60))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{summary['workload']}: validation loss (mean, band: min-max over seeds)")
    fig.tight_layout()
    atomic_write(folder / "val_loss.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    made.append("val_loss.png")
    return made


def _grid(n: int) -> tuple[int, int]:
    """(rows, columns) of panels for ``n`` panels: one row up to 3, then rows of at most 4 (3 for 5, 6 or 9)."""
    cols = n if n <= 3 else (3 if n in (5, 6, 9) else 4)
    return -(-n // cols), cols


def _domain_figures(summary: dict, folder: Path) -> list[str]:
    """val_loss_domains.png (a panel per domain: each candidate's validation loss in it) and mixture.png (a panel per
    candidate: its mixture weights stacked); none for a comparison without domains."""
    rows = [r for r in summary["rows"] if summary["runs"][r["candidate"]]]
    domains = summary.get("domains") or []
    if not rows or not domains:
        return []
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    unit = summary["unit"]
    xlabel = _COUNTER[unit]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    made = []

    nrows, ncols = _grid(len(domains))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax, d in zip(axes.ravel(), domains):
        column = _DOMAIN + d
        seen, ends = [], []
        for i, row in enumerate(rows):
            runs = [m for m in summary["runs"][row["candidate"]] if column in m]
            if not runs:
                continue
            masks = [~np.isnan(m[column]) for m in runs]
            x = _position(runs[0], unit)[masks[0]]
            vals = np.array([_on(x, _position(m, unit)[k], m[column][k]) for m, k in zip(runs, masks)])
            c = colors[i % len(colors)]
            ax.plot(x, vals.mean(0), color=c, lw=1.6, marker=".", ms=3, label=row["candidate"])
            if len(runs) > 1:
                ax.fill_between(x, vals.min(0), vals.max(0), color=c, alpha=0.2, lw=0)
            seen.append(vals.ravel())
            ends.append(vals.mean(0)[-1])
        if seen:  # the late part, where candidates differ, with every candidate's end in view
            every = np.concatenate(seen)
            lo, hi = np.nanmin(every), max(np.nanpercentile(every, 60), np.nanmax(ends))
            pad = 0.05 * (hi - lo) + 1e-3 * abs(lo) + 1e-9
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"{d}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(domains):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{summary['workload']}: validation loss per domain (mean, band: min-max over seeds)")
    fig.tight_layout()
    atomic_write(folder / "val_loss_domains.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    made.append("val_loss_domains.png")

    mixed = [r for r in rows if any(_MIXTURE + d in m for m in summary["runs"][r["candidate"]] for d in domains)]
    if not mixed:
        return made
    nrows, ncols = _grid(len(mixed))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    shade = {d: colors[k % len(colors)] for k, d in enumerate(domains)}
    for ax, row in zip(axes.ravel(), mixed):
        runs = summary["runs"][row["candidate"]]
        x = _position(runs[0], unit)
        stack = np.array([np.mean([_on(x, _position(m, unit), m[_MIXTURE + d]) if _MIXTURE + d in m
                                   else np.zeros(len(x)) for m in runs], axis=0) for d in domains])
        ax.stackplot(x, stack, colors=[shade[d] for d in domains], labels=domains, alpha=0.85, step="post")
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(0, max(1.0, float(np.nanmax(stack.sum(0)))))
        ax.set_title(row["candidate"] + (f" (mean over {len(runs)} seeds)" if len(runs) > 1 else ""))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mixture weight")
    for ax in axes.ravel()[len(mixed):]:
        ax.axis("off")
    height = 3.4 * nrows + 0.4
    fig.set_figheight(height)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=min(len(domains), 8), fontsize=8,
               frameon=False)
    fig.suptitle(f"{summary['workload']}: sampling weight of each domain (mixture, stacked)")
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    atomic_write(folder / "mixture.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    made.append("mixture.png")
    return made


def _describe(name: str, spec) -> str:
    """A candidate in the report: its LR spec, or its plan file and what that file holds."""
    if isinstance(spec, str):
        return f"- `{name}`: `{spec}`"
    channels = "; ".join(f"{channel} `{value}`" for channel, value in spec["channels"].items())
    settings = ", ".join(f"{key} {value}" for key, value in spec.items() if key not in ("file", "channels"))
    return f"- `{name}`: plan file `{spec['file']}`: {channels}" + (f" ({settings})" if settings else "")


def _domain_cells(r: dict, domains: list[str], num) -> list:
    """summary.csv's per-domain values of a row: the mean over domains, the worst domain, each domain's final loss."""
    if not domains:
        return []
    mean = r.get("domain_mean") or (None, None)
    worst = r.get("worst_val") or (None, None)
    finals = r.get("domain_final") or {}
    return [num(mean[0]), num(mean[1]), r.get("worst_domain") or "", num(worst[0]), num(worst[1]),
            *(num(v) for d in domains for v in finals.get(d, (None, None)))]


def write_report(folder: "str | Path") -> dict:
    folder = Path(folder)
    summary = summarise(folder)
    figures = _figures(summary, folder) + _domain_figures(summary, folder)
    bench = summary["bench"]
    unit, horizon = summary["unit"], summary["horizon"]
    table = _table(summary)
    domains = summary["domains"]
    by_domain = ""
    if domains:
        by_domain = f"""
Per domain ({len(domains)}: {', '.join(f'`{d}`' for d in domains)}): final validation loss in each domain
(`val_loss/<domain>` at the last step), their mean, and the worst domain (highest final loss averaged over
seeds) with its loss; mean ± std over seeds.{' Data: `' + bench['data'] + '`.' if bench.get('data') else ''}

{_domain_table(summary)}
"""
    specs = "\n".join(_describe(r["candidate"], bench["candidates"][r["candidate"]]) for r in summary["rows"])
    if summary["target"] is None:
        target = f"none (every run of the baseline `{summary['baseline']}` diverged)"
    else:
        target = f"{summary['target']:.4f} ({'given' if bench.get('target') is not None else 'mean final validation loss of the baseline `' + summary['baseline'] + '`'})"
    lost = [f"`{r['candidate']}` seed {seed} at step {at}" for r in summary["rows"] for seed, at in r["diverged"]]
    diverged = (f"\nDiverged (the loss became NaN or infinite; not counted in the statistics): {', '.join(lost)}.\n"
                if lost else "")
    alt = {"loss.png": "training loss", "val_loss.png": "validation loss",
           "val_loss_domains.png": "validation loss per domain", "mixture.png": "mixture weights per candidate"}
    pictures = "".join(f"\n![{alt[name]}]({name})\n" for name in figures)
    every = f"every {bench['eval_every']} steps" if bench['eval_every'] else "at the workload's evaluation interval"
    if unit == "step":
        clock = ""
        explained = f"""Final val loss: validation loss after the last step, mean ± std over seeds. Final train
loss: mean over the last 5% of steps. Steps to target: first evaluation ({every}) at or below the target, mean over the seeds that reach it."""
    else:
        clock = (f"\nEvery run counts {unit}s: the candidates are compared at equal {unit}s (a batch that changes makes "
                 f"steps unequal), and the figures are drawn against {unit}s.\n")
        explained = f"""Final val loss: validation loss at the horizon ({horizon} {unit}s; the last step may pass it by
less than one batch), mean ± std over seeds. Final train loss: mean over the steps in the last 5% of
the {unit}s. {unit.capitalize()}s to target: {unit}s seen at the first evaluation ({every}) at or below the target, mean over the
seeds that reach it; speed-up: the baseline's {unit}s to target divided by the candidate's. Steps: optimizer
steps to the horizon, mean over seeds."""
    text = f"""# {summary['workload']}: schedule comparison

{len(summary['rows'])} candidates x {bench['seeds']} seed(s), horizon {horizon} {unit}s, size `{bench['size'] or 'default'}`,
optimizer {bench['optimizer']}. Target validation loss: {target}.
{clock}
{table}
{by_domain}{diverged}
{explained}

Candidates:
{specs}
{pictures}"""
    atomic_write(folder / "report.md", lambda tmp: Path(tmp).write_text(text))

    def write_csv(tmp):
        def num(x):
            return "" if x is None else repr(x)

        counted = unit != "step"
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["candidate", "seeds", "final_val_mean", "final_val_std", "final_train_mean", "final_train_std",
                        f"{unit}s_to_target", *(["steps_to_target"] if counted else []), "reached", "speedup",
                        *(["steps"] if counted else []), "diverged", "diverged_at",
                        *(["domains_val_mean", "domains_val_std", "worst_domain", "worst_domain_val_mean",
                           "worst_domain_val_std"] if domains else []),
                        *(f"final_val/{d}_{stat}" for d in domains for stat in ("mean", "std"))])
            for r in summary["rows"]:
                fv, ft = r["final_val"] or (None, None), r["final_train"] or (None, None)
                w.writerow([r["candidate"], r["seeds"], num(fv[0]), num(fv[1]), num(ft[0]), num(ft[1]),
                            "" if r["to_target"] is None else r["to_target"],
                            *([num(r["steps_to_target"])] if counted else []), r["reached"], num(r["speedup"]),
                            *([num(r["steps"])] if counted else []), len(r["diverged"]),
                            " ".join(str(at) for _, at in r["diverged"]), *(_domain_cells(r, domains, num))])
    atomic_write(folder / "summary.csv", write_csv)
    if domains:  # what cadence bench and cadence report print: both tables
        table = f"{table}\n\n{_domain_table(summary)}"
    return {"table": table, "report": str(folder / "report.md"), "figures": figures, "target": summary["target"],
            "rows": summary["rows"], "unit": unit, "horizon": horizon}
