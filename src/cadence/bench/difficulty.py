"""How difficult each training file of the text workload is: what a ``curriculum`` channel orders the data by.

A run's ``difficulty`` setting says where the scores come from (lower is easier):

* ``length``: the file's length in bytes (short documents first);
* ``reference=RUN``: the loss of a finished tiny-lm or text run's model on the file (the mean
  over up to two windows of it: its start and its middle), the "reference model" of
  curriculum papers;
* ``column=FILE.csv:NAME``: a user's CSV whose ``path`` column names each training file as
  the corpus does (``<domain>/<path below the domain folder>``) and whose column ``NAME``
  holds its score.

The setting is resolved once, when the run starts, to a record ``{by, source, column, hash}``
that run.json keeps: ``hash`` fingerprints the scores, so a resume on changed scores (another
CSV, another reference run) is refused as other settings.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path

from cadence.errors import CadenceError

__all__ = ["parse", "resolve", "scores", "MAX_REFERENCE_FILES", "MAX_SCORE_FILE_BYTES"]

MAX_REFERENCE_FILES = 20_000  # files a reference model scores (two windows each)
MAX_SCORE_FILE_BYTES = 64 << 20
_FORMS = "'length', 'reference=RUN' or 'column=FILE.csv:NAME'"


def _fail(message: str) -> CadenceError:
    return CadenceError(message, field="difficulty")


def parse(spec) -> dict:
    """A difficulty setting (a string, or a record from run.json) as ``{by, source, column}``."""
    if isinstance(spec, dict):
        if set(spec) != {"by", "source", "column", "hash"} or spec["by"] not in ("length", "reference", "column"):
            raise _fail(f"a difficulty record must be {{by, source, column, hash}} as cadence wrote it; got "
                        f"{json.dumps(spec, default=str)[:80]}")
        return {k: spec[k] for k in ("by", "source", "column")}
    if not isinstance(spec, str) or not spec.strip():
        raise _fail(f"difficulty must be {_FORMS}; got {str(spec)[:60]!r}")
    text = spec.strip()
    if text == "length":
        return {"by": "length", "source": None, "column": None}
    head, sep, rest = text.partition("=")
    if sep and head.strip() == "reference" and rest.strip():
        return {"by": "reference", "source": os.path.abspath(rest.strip()), "column": None}
    if sep and head.strip() == "column":
        path, colon, name = rest.strip().rpartition(":")
        if colon and path and name:
            return {"by": "column", "source": os.path.abspath(path), "column": name}
    raise _fail(f"difficulty must be {_FORMS}; got {text[:60]!r}")


def scores(workload, setting: dict) -> "dict[str, float]":
    """{relative path: score} of every training file of ``workload`` (a Text) under ``setting``."""
    pieces = workload.pieces()
    if setting["by"] == "length":
        return {rel: float(len(data)) for files in pieces.values() for rel, data in files}
    if setting["by"] == "column":
        return _column(pieces, Path(setting["source"]), setting["column"])
    return _reference(workload, pieces, setting["source"])


_RESOLVED: dict = {}  # (workload instance, scores' fingerprint) -> scores: a run's order reuses what resolve() computed


def resolved_scores(workload, record: dict) -> "dict[str, float]":
    """The scores a record fingerprints, computed by :func:`resolve` in this process if it was called, else now."""
    found = _RESOLVED.get((id(workload), record["hash"]))
    return found if found is not None else scores(workload, parse(record))


def resolve(spec, workload) -> dict:
    """The run.json record of a difficulty setting: ``{by, source, column, hash}`` (the scores' fingerprint)."""
    setting = parse(spec)
    found = scores(workload, setting)
    digest = hashlib.sha256(json.dumps(sorted(found.items())).encode()).hexdigest()[:16]
    _RESOLVED[(id(workload), digest)] = found
    if isinstance(spec, dict) and spec["hash"] != digest:
        raise _fail(f"the difficulty scores ({setting['by']}{' of ' + str(setting['source']) if setting['source'] else ''}) "
                    f"changed since the run started (fingerprint {spec['hash']} then, {digest} now)")
    return {**setting, "hash": digest}


def _column(pieces: dict, path: Path, column: str) -> "dict[str, float]":
    try:
        size = path.stat().st_size
        if size > MAX_SCORE_FILE_BYTES:
            raise _fail(f"the difficulty file {path} is larger than {MAX_SCORE_FILE_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a BOM
    except OSError as e:
        raise _fail(f"cannot read the difficulty file {path}: {e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError:
        raise _fail(f"the difficulty file {path} is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    if "path" not in fields or column not in fields:
        missing = [c for c in ("path", column) if c not in fields]
        raise _fail(f"the difficulty file {path} has no column {', '.join(map(repr, missing))}; its columns: "
                    f"{', '.join(fields[:12]) or 'none'}")
    given = {}
    try:
        for i, row in enumerate(reader, start=2):
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                raise _fail(f"the difficulty file {path}, line {i}: {column} is {str(row[column])[:30]!r}, not a "
                            "number") from None
            if not math.isfinite(value):
                raise _fail(f"the difficulty file {path}, line {i}: {column} is {value}; scores are finite numbers")
            if row["path"] in given:
                raise _fail(f"the difficulty file {path}, line {i}: path {str(row['path'])[:80]!r} is given twice")
            given[row["path"]] = value
    except csv.Error as e:
        raise _fail(f"the difficulty file {path}, line {reader.line_num}: not a CSV row ({e})") from None
    wanted = [rel for files in pieces.values() for rel, _ in files]
    missing = [rel for rel in wanted if rel not in given]
    if missing:
        raise _fail(f"the difficulty file {path} gives no {column} for {len(missing)} of the {len(wanted)} training "
                    f"files (first: {missing[0][:80]!r}); every training file needs a score")
    return {rel: given[rel] for rel in wanted}


def _reference(workload, pieces: dict, run: str) -> "dict[str, float]":
    import torch
    import torch.nn.functional as F

    from cadence.bench import continual

    try:
        manifest = json.loads((Path(run) / "run.json").read_text(encoding="utf-8"))
        size = manifest["config"]["size"]
    except (OSError, ValueError, KeyError, TypeError):
        raise _fail(f"the difficulty reference {run} is not a finished cadence run (no readable run.json)") from None
    init = continual.read_init(run, workload=workload.name, size=size, optimizer=False)
    model = workload.model(size)
    continual.check_fits(model, init)
    model.load_state_dict(init.model)
    model.eval()
    files = [(rel, data) for domain in pieces.values() for rel, data in domain]
    if len(files) > MAX_REFERENCE_FILES:
        raise _fail(f"a reference model scores at most {MAX_REFERENCE_FILES:,} files; this corpus has {len(files):,}")
    n = workload.context + 1
    out, full = {}, []
    with torch.no_grad():
        for rel, data in files:
            if len(data) < n:  # a short file: its whole text as one sequence
                seq = torch.tensor(list(data), dtype=torch.long)[None]
                if seq.shape[1] < 2:
                    out[rel] = 0.0
                    continue
                logits = model(seq[:, :-1])
                out[rel] = float(F.cross_entropy(logits.reshape(-1, 256), seq[:, 1:].reshape(-1)))
            else:
                full.append((rel, data))
        for i in range(0, len(full), 64):
            chunk = full[i:i + 64]
            windows = []
            for _, data in chunk:
                starts = [0] if len(data) < 2 * n else [0, len(data) // 2]
                windows.append([torch.tensor(list(data[s:s + n]), dtype=torch.long) for s in starts])
            flat = torch.stack([w for ws in windows for w in ws])
            logits = model(flat[:, :-1])
            per = F.cross_entropy(logits.reshape(-1, 256), flat[:, 1:].reshape(-1), reduction="none")
            per = per.view(len(flat), -1).mean(dim=1).tolist()
            k = 0
            for (rel, _), ws in zip(chunk, windows):
                out[rel] = sum(per[k:k + len(ws)]) / len(ws)
                k += len(ws)
    return out
