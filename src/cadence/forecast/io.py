"""Read runs for forecasting: a cadence run folder, or a CSV with step,lr,loss columns.

The file is checked before it is parsed (a regular file of at most ``MAX_CSV_BYTES``, a
UTF-8 header with unique column names) and parsed by pandas' C reader, which reads about
2.5 million rows a second here, with at most ``MAX_STEPS`` rows. Every cell it uses is
checked: steps whole, >= 0 and strictly increasing; LRs finite and >= 0; losses finite
and > 0, an empty (or NaN) loss cell meaning "not measured at this step".
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from cadence.errors import LimitError
from cadence.forecast.curve import Curve, ForecastError
from cadence.forecast.limits import MAX_CSV_BYTES, MAX_HEADER_BYTES, MAX_STEPS, check_total, regular_file, shorten

__all__ = ["read_run"]

_LOSS_COLUMNS = {"val": ("val_loss", "loss"), "train": ("train_loss", "loss")}


def read_run(path: "str | Path", *, schedule: str | None = None, total: int | None = None,
             loss: str = "val", skip_warmup: bool = True) -> Curve:
    """A :class:`Curve` from a run folder (``metrics.csv``) or a ``step,lr,loss`` CSV.

    The per-step LR comes from ``schedule`` (over ``total`` steps) when given, else from
    the file's ``lr`` column, which must then have a row for every step from 0 on. ``loss``
    picks the validation loss (``val``: column ``val_loss``, measured every few steps on a
    fixed set) or the training loss (``train``: ``train_loss``); a file with neither uses
    its ``loss`` column. With ``skip_warmup`` measurements before the LR first reaches its
    peak are left out: the laws describe training after warmup (the published curves start
    there too). Every problem is a one-line ForecastError (LimitError for a limit).
    """
    if not isinstance(loss, str) or loss not in _LOSS_COLUMNS:
        raise ForecastError(f"loss must be 'val' or 'train'; got {shorten(loss)}")
    if not isinstance(skip_warmup, bool):
        raise ForecastError(f"skip_warmup must be True or False; got {shorten(skip_warmup)}")
    if schedule is not None:
        if not isinstance(schedule, str):
            raise ForecastError(f"schedule must be a spec string; got {shorten(schedule)}", field="schedule")
        if total is None:
            raise ForecastError("a schedule needs the run's length in steps (total)", field="total")
    if total is not None:
        total = check_total(total, what="a curve")
    csv_path, name = _locate(path)
    columns = _header(csv_path)
    column = next((c for c in _LOSS_COLUMNS[loss] if c in columns), None)
    if column is None or "step" not in columns:
        wanted = " or ".join(_LOSS_COLUMNS[loss])
        raise ForecastError(f"{csv_path}: needs columns step and {wanted} (found {_names(columns)})")
    use_lr = schedule is None
    if use_lr and "lr" not in columns:
        raise ForecastError(f"{csv_path}: no lr column: give the runs' schedule (and total) instead", field="schedule")
    wanted = ["step", column] + (["lr"] if use_lr else [])
    data = _read(csv_path, len(columns), [columns.index(c) for c in wanted], wanted)
    steps, values = data["step"], data[column]
    n = len(steps)
    if n == 0:
        raise ForecastError(f"{csv_path} has a header but no rows")
    bad = ~(np.isfinite(steps) & (steps >= 0) & (steps == np.round(steps)) & (steps < MAX_STEPS))
    if bad.any():
        i = int(np.argmax(bad))
        raise ForecastError(f"{csv_path}: data row {i + 1}: step must be a whole number in 0..{MAX_STEPS - 1:,}; "
                            f"got {_cell(steps[i])}")
    steps = steps.astype(np.int64)
    if n > 1 and np.any(np.diff(steps) <= 0):
        i = int(np.argmax(np.diff(steps) <= 0)) + 1
        raise ForecastError(f"{csv_path}: data row {i + 1}: steps must increase strictly; step {steps[i]} follows {steps[i - 1]}")
    if np.any(np.isinf(values)):
        i = int(np.argmax(np.isinf(values)))
        raise ForecastError(f"{csv_path}: {column} is {values[i]} at step {steps[i]}; losses must be finite "
                            "(leave the cell empty where none was measured)")
    if schedule is not None:
        if steps[-1] >= total:
            raise ForecastError(f"{csv_path} has rows up to step {steps[-1]} but the run is given as {total} steps",
                                field="total")
        from cadence.schedules import parse

        lrs = parse(schedule).values(total)
    else:
        lrs = data["lr"]
        if steps[0] != 0 or steps[-1] != n - 1:
            raise ForecastError(f"{csv_path}: the lr column does not give the LR of every step from 0 (rows have gaps); "
                                "pass the runs' schedule and total", field="schedule")
        bad = ~np.isfinite(lrs) | (lrs < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ForecastError(f"{csv_path}: lr must be a finite number >= 0 at every step; got {_cell(lrs[i])} at "
                                f"step {i}")
    keep = ~np.isnan(values)
    if skip_warmup:
        top = lrs.max()
        peak_step = int(np.argmax(lrs >= top * (1 - 1e-9))) if top > 0 else 0
        keep &= steps >= peak_step
    if not keep.any():
        raise ForecastError(f"{csv_path}: no {column} values" + (" after the warmup" if skip_warmup else ""))
    return Curve(steps=steps[keep], losses=values[keep], lrs=lrs, name=name)


def _locate(path) -> tuple[Path, str]:
    """The CSV to read and the curve's name (printable even when the file name is not UTF-8)."""
    try:
        path = Path(path)
        folder = path.is_dir()
        if folder:
            csv_path = path / "metrics.csv"
            if not csv_path.exists():
                raise ForecastError(f"{path} is a folder without metrics.csv: not a cadence run folder")
        elif not path.exists():
            shown = str(path) if str(path).isprintable() else shorten(str(path))
            raise ForecastError(f"{shown}: no such run folder or CSV file")
        else:
            csv_path = path
    except OSError as e:
        raise ForecastError(f"cannot read {path}: {e.strerror or e}") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, ForecastError):
            raise
        raise ForecastError(f"cannot read {shorten(path)}: not a file name") from None
    name = path.name if folder else path.stem
    return csv_path, name.encode("utf-8", "backslashreplace").decode("utf-8")


def _header(csv_path: Path) -> list[str]:
    """The column names of the first line: UTF-8 (a BOM is allowed), unique, at most MAX_HEADER_BYTES."""
    regular_file(csv_path, MAX_CSV_BYTES, "curve file")
    try:
        with open(csv_path, "rb") as f:
            head = f.read(MAX_HEADER_BYTES + 1)
    except OSError as e:
        raise ForecastError(f"cannot read {csv_path}: {e.strerror or e}") from None
    if not head.strip():
        raise ForecastError(f"{csv_path} is empty: a curve file needs a header row (step,lr,loss) and rows")
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) > MAX_HEADER_BYTES:
        raise LimitError(f"{csv_path}: the header line is longer than {MAX_HEADER_BYTES:,} bytes")
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
        names = [c.strip() for c in next(csv.reader([text]), [])]
    except UnicodeDecodeError:
        raise ForecastError(f"{csv_path} is not a text CSV file (its first line is not UTF-8)") from None
    except csv.Error as e:
        raise ForecastError(f"{csv_path}: cannot read its header line ({e})") from None
    if any(ch < " " and ch != "\t" for ch in text):
        raise ForecastError(f"{csv_path} is not a text CSV file (its first line has control characters)")
    seen = set()
    for c in names:
        if c in seen:
            raise ForecastError(f"{csv_path}: column {c!r} appears twice in the header")
        seen.add(c)
    return names


def _read(csv_path: Path, width: int, index: list[int], names: list[str]) -> dict[str, np.ndarray]:
    """The columns at ``index`` of every row after the header, as float64 (empty cells are NaN).

    pandas is told the header's width: left to infer it from the first row, a short first row
    makes it drop the columns it did not see (pandas 3.1)."""
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas' ParserWarning and the like: failures raise below
            frame = pd.read_csv(csv_path, header=None, names=list(range(width)), skiprows=1, usecols=index, dtype=np.float64, engine="c",
                                encoding="utf-8", nrows=MAX_STEPS + 1, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        return {name: np.empty(0) for name in names}
    except UnicodeDecodeError:
        raise ForecastError(f"{csv_path} is not a text CSV file (not UTF-8)") from None
    except OSError as e:
        raise ForecastError(f"cannot read {csv_path}: {e.strerror or e}") from None
    except (ValueError, OverflowError, pd.errors.ParserError) as e:
        detail = " ".join(str(e).split())
        if "out-of-bounds" in detail:  # no row reaches a column the header names
            raise ForecastError(f"{csv_path}: every row has fewer fields than the header (no row has a "
                                f"{names[index.index(max(index))]} cell)") from None
        for i, name in zip(index, names):
            detail = detail.replace(f"column {i}", f"column {name!r}")
        raise ForecastError(f"{csv_path}: not a CSV of numbers ({detail[:160]})") from None
    if any(i not in frame.columns for i in index):  # never seen with names given; a wrong answer is worse than none
        raise ForecastError(f"{csv_path}: the rows do not match the header's {width} columns")
    if len(frame) > MAX_STEPS:
        raise LimitError(f"{csv_path} has more than {MAX_STEPS:,} rows; a curve is limited to {MAX_STEPS:,} steps")
    return {name: frame[i].to_numpy(dtype=np.float64) for i, name in zip(index, names)}


def _cell(value: float) -> str:
    return "an empty or NaN cell" if np.isnan(value) else f"{value:g}"


def _names(columns: list[str]) -> str:
    text = ", ".join(map(repr, columns)) or "no columns"
    return text if len(text) <= 200 else text[:197] + "..."
