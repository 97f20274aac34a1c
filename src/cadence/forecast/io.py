"""Read runs for forecasting: a cadence run folder, or a CSV with step,lr,loss columns."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cadence.forecast.curve import Curve, ForecastError
from cadence.schedules import parse

__all__ = ["read_run"]


def read_run(path: "str | Path", *, schedule: str | None = None, total: int | None = None,
             loss: str = "val", skip_warmup: bool = True) -> Curve:
    """A :class:`Curve` from a run folder (``metrics.csv``) or a ``step,lr,loss`` CSV.

    The per-step LR comes from ``schedule`` when given, else from the file's ``lr`` column,
    which must then have a row for every step from 0 on. In a run folder ``loss`` picks the
    validation loss (``val``, measured every few steps on a fixed set) or the training loss.
    With ``skip_warmup`` measurements before the LR first reaches its peak are left out: the
    laws describe training after warmup (the published curves start there too).
    """
    path = Path(path)
    csv_path = path / "metrics.csv" if path.is_dir() else path
    if not csv_path.exists():
        raise ForecastError(f"{path}: no such run folder or CSV file")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    column = {"val": "val_loss", "train": "train_loss"}[loss] if "val_loss" in columns else "loss"
    if column not in columns or "step" not in columns:
        raise ForecastError(f"{csv_path}: needs columns step and {column} (found {', '.join(columns)})")
    try:
        steps = np.array([int(float(r["step"])) for r in rows])
        values = np.array([float(r[column]) if r[column] not in ("", None) else np.nan for r in rows])
        lr_column = np.array([float(r["lr"]) if r.get("lr") not in ("", None) else np.nan for r in rows]) \
            if "lr" in columns else None
    except ValueError as e:
        raise ForecastError(f"{csv_path}: a value is not a number ({e})") from None
    if schedule is not None:
        if total is None:
            raise ForecastError("--schedule needs --total (the run's length in steps)")
        lrs = parse(schedule).values(total)
    else:
        if lr_column is None or len(steps) == 0 or steps[0] != 0 or np.any(np.diff(steps) != 1) or np.any(np.isnan(lr_column)):
            raise ForecastError(f"{csv_path}: the lr column does not give the LR of every step from 0 (rows have gaps); "
                                "pass --schedule SPEC --total N")
        lrs = lr_column
    keep = ~np.isnan(values)
    if skip_warmup:
        peak_step = int(np.argmax(lrs >= lrs.max() * (1 - 1e-9)))
        keep &= steps >= peak_step
    if not keep.any():
        raise ForecastError(f"{csv_path}: no {column} values")
    return Curve(steps=steps[keep], losses=values[keep], lrs=lrs, name=path.stem if path.is_file() else path.name)
