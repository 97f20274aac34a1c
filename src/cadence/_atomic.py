"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_existing(path: "str | Path", overwrite: bool) -> Path:
    """Nothing a user made is replaced silently: an existing file needs ``overwrite``."""
    from cadence.errors import ExistsError

    path = Path(path)
    if path.exists() and not overwrite:
        raise ExistsError(path)
    return path


def atomic_write(path: "str | Path", write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, fsync the result, then rename it over ``path``.

    The temporary file sits next to ``path`` (same file system, so the rename is atomic) and
    is removed if ``write`` fails. The new file gets the usual permissions (0666 & ~umask).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
