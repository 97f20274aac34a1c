"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one.

Temporary files. By default a write goes through a fresh ``mkstemp`` name (safe when
several processes write the same path). A caller that owns its folder exclusively (the
runner holds a lock on its run folder) passes ``temp=stable_temp(path)`` instead: the
name ``.NAME.cadence-tmp`` is then the only one such a write can leave behind after a
kill, so cleaning up removes exactly that name and never a file cadence did not write.

Test hook (not a feature): ``CADENCE_KILL_AT=POINT:N`` makes the process kill itself with
SIGKILL the N-th time it reaches the named point (:func:`kill_point`). The kill tests use it
to stop a run at exact instants: ``write:NAME`` (the temporary file of NAME is written; it
is cut to half first, as a kill in mid-write leaves it), ``rename:NAME`` (just before the
rename over NAME), ``renamed:NAME`` (just after it), and the runner's own points.
``CADENCE_KILL_SIGNAL=TERM`` (or ``INT``) sends that signal instead, to test the handlers.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "stable_temp", "refuse_existing", "kill_point", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".cadence-tmp"
_KILL_COUNTS: dict[str, int] = {}


def kill_point(name: str, *, torn: "str | Path | None" = None) -> None:
    """Test hook: die here if ``CADENCE_KILL_AT`` names this point and occurrence (see the module doc)."""
    spec = os.environ.get("CADENCE_KILL_AT")
    if not spec:
        return
    want, _, nth = spec.rpartition(":")
    if want != name:
        return
    _KILL_COUNTS[name] = _KILL_COUNTS.get(name, 0) + 1
    if str(_KILL_COUNTS[name]) != nth.strip():
        return
    if torn is not None and os.path.exists(torn):
        os.truncate(torn, os.path.getsize(torn) // 2)
    chosen = getattr(signal, "SIG" + os.environ.get("CADENCE_KILL_SIGNAL", "KILL").upper(), None)
    if chosen is None:  # pragma: no cover - Windows has no SIGKILL
        os._exit(137)
    os.kill(os.getpid(), chosen)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_existing(path: "str | Path", overwrite: bool) -> Path:
    """Nothing a user made is replaced silently: an existing file needs ``overwrite``."""
    from cadence.errors import ExistsError

    path = Path(path)
    # lexists: a dangling link is a user's file too; a name the OS cannot stat (too long) is
    # not there, and writing it fails later with the OSError its caller reports
    if os.path.lexists(path) and not overwrite:
        raise ExistsError(path)
    return path


def stable_temp(path: "str | Path") -> Path:
    """The one temporary name ``atomic_write(path, ..., temp=stable_temp(path))`` uses: ``.NAME.cadence-tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_SUFFIX}")


def atomic_write(path: "str | Path", write: Callable[[str], None], *, temp: "str | Path | None" = None) -> Path:
    """Call ``write(tmp_path)``, fsync the result, then rename it over ``path``.

    The temporary file sits next to ``path`` (same file system, so the rename is atomic) and
    is removed if ``write`` fails. The new file gets the usual permissions (0666 & ~umask).
    ``temp``: a fixed temporary path, for callers that own the folder (see the module doc);
    a stale file of that exact name (a write a kill cut short) is replaced.
    """
    path = Path(path)
    if temp is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    else:
        tmp = str(temp)
        if os.path.lexists(tmp) and not os.path.isdir(tmp):
            os.unlink(tmp)  # never written through: a link of that name is removed, not followed
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        write(tmp)
        kill_point(f"write:{path.name}", torn=tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        kill_point(f"rename:{path.name}")
        os.replace(tmp, path)
        kill_point(f"renamed:{path.name}")
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path
