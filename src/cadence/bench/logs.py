"""What a run shows while it trains: TensorBoard scalars and progress on stderr.

* :class:`TensorBoardLog` writes every metrics.csv row as TensorBoard scalars (the same
  names as the columns, the row's ``step`` as the global step). TensorBoard is imported
  only when a log is opened (extra ``[tensorboard]``).
* :class:`Progress` shows a run's steps: a tqdm bar on a terminal (``"bar"``), or a plain
  line every 5% of the horizon (``"lines"``) so that a log file shows the run is alive.
* :class:`DataProgress` does the same for reading a workload's data.

Nothing here prints unless the caller asked for progress.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from cadence.errors import CadenceError, RunError

__all__ = ["TensorBoardLog", "require_tensorboard", "Progress", "DataProgress", "progress_mode", "auto_progress",
           "PROGRESS_MODES", "LINE_EVERY"]

PROGRESS_MODES = ("bar", "lines")
LINE_EVERY = 0.05  # "lines": one line each time the run passes another 5% of its horizon
TENSORBOARD_EXTRA = "pip install 'cadence[tensorboard]'"


# -- TensorBoard ----------------------------------------------------------------------------

def require_tensorboard():
    """torch's SummaryWriter class, or a one-line CadenceError naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CadenceError(f"writing TensorBoard event files needs the tensorboard package: {TENSORBOARD_EXTRA}",
                           field="tensorboard") from None
    return SummaryWriter


def check_tensorboard_folder(folder: "str | os.PathLike") -> Path:
    """The folder as a Path, refused (RunError, one line) when it cannot hold event files."""
    if not isinstance(folder, (str, os.PathLike)):
        raise RunError(f"tensorboard must be a folder name; got {str(folder)[:60]!r}", field="tensorboard")
    path = Path(folder)
    if "\x00" in str(path):
        raise RunError("the tensorboard folder's name contains a NUL character", field="tensorboard")
    if not str(path).strip():
        raise RunError("the tensorboard folder's name is empty; name a folder", field="tensorboard")
    if os.path.lexists(path) and not path.is_dir():
        raise RunError(f"{path} exists and is not a folder; TensorBoard event files go into a folder",
                       field="tensorboard")
    return path


_EVENTS = "events.out.tfevents."


def _after_existing(folder: Path) -> None:
    """Wait (at most a second or two) until a new event file's name sorts after every one already in ``folder``.

    Readers take a folder's event files in name order, which starts with the creation second;
    the restart marker of a resume or rollback only hides the steps it redoes if its file comes
    after theirs, and within one second the rest of the name (host, process id, counter) decides.
    """
    try:
        with os.scandir(folder) as entries:
            seconds = [entry.name[len(_EVENTS):].split(".", 1)[0] for entry in entries if entry.name.startswith(_EVENTS)]
    except OSError:  # not there yet: nothing to come after
        return
    newest = max((int(x) for x in seconds if x.isdigit()), default=None)
    if newest is None:
        return
    wait = newest + 1 - time.time()
    if 0 < wait <= 2:  # a clock far behind the files' is not waited for
        time.sleep(wait)


class TensorBoardLog:
    """The rows of one metrics.csv as TensorBoard scalars.

    ``header`` is metrics.csv's header (``step`` first); each :meth:`row` gets the row's
    values in that order. Every other column becomes a scalar of the same name at global
    step ``row[0]``; empty cells (None) and NaN are skipped. Values are stored as TensorBoard
    stores scalars: 32-bit floats.

    A run that resumes from step ``start`` opens its log with ``start``: the new event file
    begins with TensorBoard's restart marker (``purge_step``), so readers drop the events
    of steps >= ``start`` that an earlier process wrote (the steps it redoes) and no step
    is shown twice. The files are never edited; each process writes its own.
    """

    def __init__(self, folder: Path, header: "list[str]", start: int) -> None:
        self.folder, self.tags = folder, list(header[1:])
        self.writer = self._writer(start)

    @classmethod
    def open(cls, folder: "str | os.PathLike", header: "list[str]", start: int) -> "TensorBoardLog":
        """A log in ``folder`` (made if missing) for a run that goes on from step ``start``."""
        require_tensorboard()
        return cls(check_tensorboard_folder(folder), header, start)

    def _writer(self, start: int):
        SummaryWriter = require_tensorboard()
        _after_existing(self.folder)
        return SummaryWriter(log_dir=str(self.folder), purge_step=start, flush_secs=30)

    def restart(self, step: int) -> None:
        """The run went back to ``step`` (a rollback): a new event file whose readers drop the later steps."""
        self.writer.close()
        self.writer = self._writer(step)

    def row(self, values) -> None:
        values = list(values)
        step = int(values[0])
        for tag, value in zip(self.tags, values[1:]):
            if value is None or isinstance(value, str):
                continue
            value = float(value)
            if math.isnan(value):
                continue
            self.writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# -- progress -------------------------------------------------------------------------------

def progress_mode(progress) -> "str | None":
    """``"bar"``, ``"lines"`` or None from a ``progress`` argument (True is ``"bar"``, as before)."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return "bar"
    if isinstance(progress, str) and progress in PROGRESS_MODES:
        return progress
    raise CadenceError(f"progress must be 'bar', 'lines', True, False or None; got {str(progress)[:40]!r}",
                       field="progress")


def auto_progress(stream=None) -> str:
    """``"bar"`` when ``stream`` (default stderr) is a terminal, else ``"lines"``."""
    stream = sys.stderr if stream is None else stream
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or odd stream
        return "lines"


def duration(seconds: float) -> str:
    """``12.3 s``, ``3m 50s``, ``2h 05m``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _say(stream, text: str) -> None:
    stream = sys.stderr if stream is None else stream
    print(text, file=stream, flush=True)


class Progress:
    """A run's progress over ``total`` (its horizon, in ``unit``s), from ``initial`` (a resume).

    ``"bar"``: a tqdm bar (loss and LR after it; tqdm shows the ETA), or lines when tqdm is
    not installed. ``"lines"``: one line each time the position passes another ``every``
    (5%) of the horizon, the last at the end::

        tiny-lm seed 0: step 100/2000 (5%), loss 2.3456, 12.3 s elapsed, ETA 3m 50s

    ``elapsed`` is the run's training time before this process (a resume); the ETA uses
    this process's own pace.
    """

    def __init__(self, mode: str, desc: str, total: int, *, initial: int = 0, unit: str = "step",
                 elapsed: float = 0.0, every: float = LINE_EVERY, stream=None) -> None:
        self.mode, self.desc, self.total, self.initial, self.unit = mode, desc, total, initial, unit
        self.stream, self.every, self.before = stream, every, elapsed
        self.position = initial
        self.t0 = time.perf_counter()
        self.bar = None
        if mode == "bar":
            tqdm = _tqdm()
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
                                file=sys.stderr if stream is None else stream)
            else:
                self.mode = "lines"
        self.next = self._after(initial)

    def _after(self, position: int) -> float:
        """The next position that gets a line: the first multiple of ``every * total`` past ``position``."""
        part = self.every * self.total
        return (math.floor(position / part + 1e-9) + 1) * part

    def update(self, position: int, step: int, loss: "float | None" = None, lr: "float | None" = None) -> None:
        """The run is at ``position`` (in its unit) after ``step`` optimizer steps (back, after a rollback)."""
        before, self.position = self.position, position
        if position < before:
            self.next = self._after(position)
        if self.bar is not None:
            post = {}
            if loss is not None:
                post["loss"] = f"{loss:.4f}"
            if lr is not None:
                post["lr"] = f"{lr:.3g}"
            if post:
                self.bar.set_postfix(post, refresh=False)
            self.bar.update(position - before)
            return
        if position + 1e-9 < self.next and position < self.total:
            return
        self.next = self._after(position)
        _say(self.stream, self.line(position, step, loss))

    def line(self, position: int, step: int, loss: "float | None") -> str:
        now = time.perf_counter() - self.t0
        pct = min(100, int(100 * position / self.total)) if self.total else 100  # a sample clock may pass the end
        if self.unit == "step":
            where = f"step {step}/{self.total} ({pct}%)"
        else:
            where = f"step {step}, {position:,}/{self.total:,} {self.unit}s ({pct}%)"
        parts = [where]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        parts.append(f"{duration(self.before + now)} elapsed")
        if position >= self.total:
            parts.append("done")
        elif position > self.initial:
            parts.append(f"ETA {duration(now / (position - self.initial) * (self.total - position))}")
        return f"{self.desc}: " + ", ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class DataProgress:
    """Reading a workload's data: a bar over its files on a terminal, or a line at the start and the end.

    Call :meth:`start` with the number of files once they are listed, :meth:`update` after
    each file (bytes read so far), :meth:`close` at the end (also on an error: then it says
    nothing more).
    """

    def __init__(self, mode: "str | None", desc: str, what: str, stream=None) -> None:
        self.mode, self.desc, self.stream = mode, desc, stream
        self.t0 = time.perf_counter()
        self.bar = None
        self.files = self.bytes = 0
        if mode == "lines" or (mode == "bar" and _tqdm() is None):
            self.mode = "lines"
            _say(stream, f"{desc}: reading {what}")

    def start(self, files: int) -> None:
        if self.mode == "bar":
            self.bar = _tqdm()(total=files, desc=f"{self.desc}: reading", unit="file", dynamic_ncols=True, leave=False,
                               file=sys.stderr if self.stream is None else self.stream)

    def update(self, files: int, nbytes: int) -> None:
        self.files, self.bytes = files, nbytes
        if self.bar is not None:
            self.bar.set_postfix_str(f"{nbytes / 1e6:.1f} MB", refresh=False)
            self.bar.update(files - self.bar.n)

    def close(self, ok: bool = True) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if ok and self.mode == "lines":
            took = duration(time.perf_counter() - self.t0)
            _say(self.stream, f"{self.desc}: read {self.files:,} files, {self.bytes / 1e6:.1f} MB, in {took}")
