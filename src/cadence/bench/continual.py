"""Continual pre-training's building blocks: start a run from a finished one, evaluate densely
after the switch to new data, and measure the stability gap.

* :func:`read_init` checks that a run folder is a *complete* cadence run whose model is the
  new run's (same workload, or ``tiny-lm`` and ``text``, which train the same ``ByteGPT``; same
  size) and loads its weights, and its optimizer state when asked, from ``checkpoint.pt``
  with ``torch.load(weights_only=True)`` (loading never runs code). :func:`check_fits` compares
  them with the new run's fresh model (and optimizer); :func:`verify` tells a resume whether the
  finished run's checkpoint is still the one the new run started from.
* :func:`is_dense_eval`: whether a step is in the dense evaluation window after the switch.
* :func:`stability_gap`: how deep and how long the old domain's validation loss rises after
  the switch (the "stability gap": De Lange, van de Ven and Tuytelaars 2023, "Continual
  evaluation for lifelong learning: identifying the stability gap"; Ibrahim et al. 2024,
  "Simple and Scalable Strategies to Continually Pre-train Large Language Models", who re-warm
  and re-decay the LR and replay a few percent of the old data).

Steps follow the runner's counting (docs/runner.md): optimizer steps are numbered from 0, the
row of metrics.csv whose ``step`` is ``k`` holds what was measured after step ``k`` (``k + 1``
steps done), and the runner's clock reads ``k + 1`` when it decides whether to evaluate.
``switch`` is the number of the first step trained on the new data (0 in a run started from
another); rows with ``step < switch`` were measured before any new data was seen.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cadence._files import read_json
from cadence.errors import CadenceError, RunError

__all__ = ["Init", "read_init", "check_fits", "check_record", "verify", "model_of", "dense_steps", "is_dense_eval",
           "stability_gap", "HASH_CHARS"]

#: Hex characters of the checkpoint's sha256 kept in the record.
HASH_CHARS = 16

# Workloads that build the same model as another one (module class, sizes, context): text is tiny-lm's model
# on other data (cadence.bench.text.Text subclasses TinyLM and keeps its `model`, `shapes` and `context`).
_SAME_MODEL = {"text": "tiny-lm"}


def model_of(workload: str) -> str:
    """The workload whose model ``workload`` trains: weights move between two workloads with the same answer."""
    return _SAME_MODEL.get(workload, workload)


@dataclass
class Init:
    """What a new run takes from a finished one.

    ``model``: the finished run's ``model.state_dict()`` (CPU tensors); ``optimizer``: its
    optimizer's state dict, or None when not asked for; ``record``: JSON-safe facts for the new
    run's run.json (:func:`check_record` lists them).
    """

    model: dict
    optimizer: dict | None
    record: dict


def _fail(message: str) -> RunError:
    return RunError(message, field="init")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def _read_manifest(path: Path) -> dict:
    """The facts of a run.json that starting from it needs: format, status, step, workload, size.

    Read as data, not resolved as a resume resolves it (``runner.read_manifest``): that would
    read the finished run's data again, and refuse it when its data folder has moved or gone,
    which does not matter to its weights.
    """
    from cadence.bench.runner import FORMAT, MAX_MANIFEST_BYTES, STATUSES

    try:
        data = read_json(path, MAX_MANIFEST_BYTES, "cadence run manifest", RunError)
    except CadenceError as e:  # unreadable, not JSON, too large
        raise _fail(f"init run: {e}") from None
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(config, dict):
        raise _fail(f"init run: {path} is not a cadence run manifest (format {FORMAT!r} with a config)")
    status, step = data.get("status"), data.get("step")
    if status not in STATUSES:
        raise _fail(f"init run: {path}: status must be one of {', '.join(STATUSES)}; got {str(status)[:40]!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _fail(f"init run: {path}: step must be a whole number >= 0; got {str(step)[:40]!r}")
    for key in ("workload", "size"):
        if not isinstance(config.get(key), str):
            raise _fail(f"init run: {path}: config.{key} must be a name; got {str(config.get(key))[:40]!r}")
    return data


def read_init(run: "str | os.PathLike", *, workload: str, size: str, optimizer: bool) -> Init:
    """Check that ``run`` is a finished cadence run a ``workload`` run of ``size`` can start from, and load it.

    Accepted: a folder whose run.json says ``complete`` (read as data: the finished run's data
    folder need not exist any more), whose workload trains the same model (:func:`model_of`)
    at the same size, and whose ``checkpoint.pt`` loads with ``weights_only=True``, holds a ``model`` state (and an ``optimizer`` state when
    ``optimizer``) and was written at the step run.json records. Everything else raises a
    one-line RunError (``field="init"``) saying what is wrong and what is allowed.

    ``record``: ``run`` (the folder's absolute path), ``workload``, ``size``, ``step`` (the
    steps the finished run trained), ``checkpoint`` (the first 16 hex characters of the sha256
    of checkpoint.pt's bytes, the very bytes loaded) and ``optimizer`` (whether its state was
    taken). The finished run's optimizer kind is not checked here: :func:`check_fits` with the
    new optimizer compares the state's structure.
    """
    if not isinstance(run, (str, os.PathLike)) or not str(run).strip() or "\x00" in str(run):
        raise _fail(f"init must name a finished run's folder; got {str(run)[:60]!r}")
    if not isinstance(workload, str) or not isinstance(size, str):
        raise CadenceError(f"workload and size must be names; got {workload!r}, {size!r}")
    if not isinstance(optimizer, bool):
        raise CadenceError(f"optimizer must be true or false; got {optimizer!r}", field="init")
    folder = Path(os.path.abspath(run))
    if not folder.exists():
        raise _fail(f"init run {folder} does not exist; init names the folder of a complete cadence run")
    if not folder.is_dir():
        raise _fail(f"init run {folder} is not a folder; init names the folder of a complete cadence run")
    if not os.path.lexists(folder / "run.json"):
        raise _fail(f"init run {folder} is not a cadence run folder (no run.json)")
    manifest = _read_manifest(folder / "run.json")
    status, step, theirs = manifest["status"], manifest["step"], manifest["config"]
    if status != "complete":
        raise _fail(f"init run {folder} is {status} (at step {step}); only a complete run can start another: "
                    "finish it first (resume it)")
    if model_of(theirs["workload"]) != model_of(workload) or theirs["size"] != size:
        raise _fail(f"init run {folder} trained {theirs['workload']} size {theirs['size']}; this run is {workload} "
                    f"size {size}: the model must be the same (the same workload, or tiny-lm and text, at the same size)")

    path = folder / "checkpoint.pt"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _fail(f"init run {folder} has no checkpoint.pt (removed after it finished?); its weights are gone") from None
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror or e}") from None
    try:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint gets the same answer
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise _fail(f"init run checkpoint {path} is unreadable or corrupt ({type(e).__name__}: {first})") from None
    wanted = ("model", "optimizer") if optimizer else ("model",)
    if not isinstance(state, dict) or not all(isinstance(state.get(k), dict) for k in wanted):
        raise _fail(f"init run checkpoint {path} is not a cadence checkpoint (it needs {' and '.join(wanted)} states)")
    model = state["model"]
    if not model or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise _fail(f"init run checkpoint {path}: its model state is not a map of names to tensors")
    if state.get("step") != step:
        raise _fail(f"init run checkpoint {path} is at step {str(state.get('step'))[:20]}, but run.json says the run "
                    f"completed at step {step}: the checkpoint is not that run's last")
    record = {"run": str(folder), "workload": theirs["workload"], "size": theirs["size"], "step": step,
              "checkpoint": _digest(data), "optimizer": optimizer}
    return Init(model=model, optimizer=state["optimizer"] if optimizer else None, record=record)


def check_fits(model: torch.nn.Module, init: Init, optimizer: "torch.optim.Optimizer | None" = None) -> None:
    """Raise a one-line RunError unless ``init``'s weights (and optimizer state) fit the new run's.

    The model: the same parameter and buffer names, each with the same shape. The optimizer
    (when both ``optimizer`` and ``init.optimizer`` are given): the same number of param
    groups with the same number of parameters, hyperparameter names of which one group's
    include the other's (another torch release may add one; an SGD state does not fit
    AdamW), and every tensor of the per-parameter state of the parameter's
    shape (or a scalar, such as AdamW's ``step``).
    """
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in init.model.items()}
    where = init.record.get("run", "the init run")
    if mine != theirs:
        missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
        shapes = [f"{k} {list(theirs[k])} vs {list(mine[k])}" for k in mine if k in theirs and mine[k] != theirs[k]]
        parts = ([f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []) + \
                ([f"unknown {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}"] if extra else []) + \
                ([f"shapes {', '.join(shapes[:3])}{' ...' if len(shapes) > 3 else ''}"] if shapes else [])
        raise _fail(f"the weights of {where} do not fit this run's model ({'; '.join(parts)}); "
                    "the model must be the same architecture and size")
    if optimizer is None or init.optimizer is None:
        return
    saved = init.optimizer
    groups, state = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict) or not all(isinstance(g, dict) for g in groups):
        raise _fail(f"the optimizer state of {where} is not a torch optimizer's state dict")
    ours = optimizer.param_groups
    if [len(g.get("params", ())) for g in groups] != [len(g["params"]) for g in ours]:
        raise _fail(f"the optimizer state of {where} has param groups of {[len(g.get('params', ())) for g in groups]} "
                    f"parameters; this run's optimizer {[len(g['params']) for g in ours]}")
    for g, o in zip(groups, ours):
        if not (set(g) <= set(o) or set(o) <= set(g)):  # one torch release may add a setting: not another kind
            raise _fail(f"the optimizer state of {where} has settings {', '.join(sorted(set(g) - {'params'}))}; this "
                        f"run's {type(optimizer).__name__} has {', '.join(sorted(set(o) - {'params'}))}: the optimizer "
                        "must be the same kind")
    params = [p for g in ours for p in g["params"]]
    for index, entry in state.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(params) \
                or not isinstance(entry, dict):
            raise _fail(f"the optimizer state of {where} refers to parameter {str(index)[:20]}; this run has "
                        f"{len(params)}")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and tuple(value.shape) != tuple(params[index].shape):
                raise _fail(f"the optimizer state of {where}: {name} of parameter {index} has shape "
                            f"{list(value.shape)}, the parameter {list(params[index].shape)}")


_RECORD_TYPES = {"run": str, "workload": str, "size": str, "step": int, "checkpoint": str, "optimizer": bool}


def check_record(record: object) -> dict:
    """``record`` as :func:`read_init` made it, or a one-line RunError (for reading it back from run.json)."""
    if not (isinstance(record, dict) and set(record) == set(_RECORD_TYPES) and all(
            isinstance(record[k], t) and (t is bool or not isinstance(record[k], bool)) for k, t in _RECORD_TYPES.items())
            and len(record["checkpoint"]) == HASH_CHARS and record["run"].strip() and "\x00" not in record["run"]):
        raise _fail(f"the init record must be {{{', '.join(_RECORD_TYPES)}}} as cadence wrote it; got "
                    f"{json.dumps(record, default=str)[:80]}")
    return record


def verify(record: dict) -> str | None:
    """Whether the init run's checkpoint still has the bytes the new run started from: None, or why not (one line).

    Needed only when a run started from another has no checkpoint of its own yet (killed
    before its first): it then starts over from the init run's weights, which must be the
    same for the same numbers. Once the new run has checkpointed, its own checkpoint holds
    everything it needs and the record is informational: a resume need not read the init
    run at all, and may go on after that run was moved or removed.
    """
    try:
        record = check_record(record)
    except RunError as e:
        return str(e)
    path = Path(record["run"]) / "checkpoint.pt"
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as e:
        return f"the init run's checkpoint {path} cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})"
    now = _digest(data)
    if now != record["checkpoint"]:
        return (f"the init run's checkpoint {path} changed since this run started from it "
                f"(sha256 {record['checkpoint']} then, {now} now)")
    return None


# -- dense evaluation after the switch ----------------------------------------------------------

def dense_steps(switch: int, every: int, until: int) -> range:
    """The clock readings (steps done) at which the dense window evaluates: ``switch + every``,
    ``switch + 2 * every``, ... up to ``switch + until`` (so the rows ``switch + every - 1``, ...)."""
    for name, value, low in (("switch", switch, 0), ("every", every, 1), ("until", until, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise CadenceError(f"dense evaluation: {name} must be a whole number >= {low}; got {value!r}",
                               field="dense_eval")
    return range(switch + every, switch + until + 1, every)


def is_dense_eval(step: int, *, switch: int, every: int, until: int) -> bool:
    """Whether the clock reading ``step`` (steps done, as ``Loop.evaluate`` reads it) is in :func:`dense_steps`."""
    return step in dense_steps(switch, every, until)


# -- the stability gap ---------------------------------------------------------------------------

def stability_gap(metrics: "dict[str, np.ndarray]", column: str, switch: int, *, baseline: float | None = None,
                  tolerance: float = 0.01) -> dict:
    """How far and how long ``column`` (the old domain's validation loss) rises after the switch.

    ``metrics``: columns of floats as ``cadence.bench.report.load_metrics`` returns them, with
    ``step``; a NaN (or any non-finite) cell is a point not measured and is ignored.
    ``switch``: the first step trained on the new data (0 for a run started from another).
    Points *after the switch* are the measured rows with ``step >= switch``.

    * ``baseline``: the level before the switch: as given, else the last measured value in a
      row with ``step < switch``. A run started from another has no such row: give the init
      run's last measured value of the same column.
    * ``peak_step``, ``peak``: the row after the switch with the highest loss (the earliest
      of equals) and that loss.
    * ``depth`` = ``max(0, peak - baseline)``; ``depth_rel`` = ``depth / baseline``.
    * ``band`` = ``baseline * (1 + tolerance)``. If no point after the switch is above the
      band, there is no gap: ``length`` 0, ``recovery_step`` None, ``recovered`` True.
      Otherwise ``recovery_step`` is the first row after ``peak_step`` whose loss is at or
      below the band, and ``length`` = ``recovery_step - switch + 1``: the steps on the new
      data up to and including that one; both None and ``recovered`` False if the run ends
      before it.
    * ``points``: the measured points after the switch.

    Refused (one-line CadenceError): a missing column, no measured point after the switch, no
    baseline (none given and none measured before the switch), a baseline that is not a
    finite number > 0, a tolerance that is not a finite number >= 0.
    """
    if isinstance(switch, bool) or not isinstance(switch, int) or switch < 0:
        raise CadenceError(f"switch must be a whole number of steps >= 0; got {switch!r}", field="switch")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise CadenceError(f"tolerance must be a finite number >= 0; got {tolerance!r}", field="tolerance")
    for name in ("step", column):
        if name not in metrics:
            known = ", ".join(k for k in metrics if k.startswith("val_loss")) or "none"
            raise CadenceError(f"the metrics have no column {name!r} (validation columns: {known})", field="column")
    steps = np.asarray(metrics["step"], dtype=np.float64)
    values = np.asarray(metrics[column], dtype=np.float64)
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    measured = np.isfinite(values) & np.isfinite(steps)
    after = measured & (steps >= switch)
    if not after.any():
        raise CadenceError(f"{column} has no measured point at or after the switch (step {switch}); evaluate after "
                           "the switch", field="column")
    if baseline is None:
        before = measured & (steps < switch)
        if not before.any():
            raise CadenceError(f"{column} has no measured point before the switch (step {switch}); give the baseline "
                               "(for a run started from another: that run's last measured value)", field="baseline")
        baseline = float(values[before][-1])
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline) \
            or baseline <= 0:
        raise CadenceError(f"the baseline of {column} must be a finite number > 0; got {baseline!r}", field="baseline")
    baseline = float(baseline)
    s, v = steps[after], values[after]
    top = int(np.argmax(v))  # the first of equal maxima
    band = baseline * (1 + tolerance)
    depth = max(0.0, float(v[top]) - baseline)
    if not (v > band).any():
        recovery, length, recovered = None, 0, True
    else:
        back = np.nonzero(v[top + 1:] <= band)[0]
        recovered = back.size > 0
        recovery = int(s[top + 1 + back[0]]) if recovered else None
        length = recovery - switch + 1 if recovered else None
    return {"column": column, "switch": switch, "baseline": baseline, "tolerance": float(tolerance),
            "peak_step": int(s[top]), "peak": float(v[top]), "depth": depth, "depth_rel": depth / baseline,
            "recovery_step": recovery, "length": length, "recovered": recovered, "points": int(after.sum())}
