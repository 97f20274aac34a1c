"""Reading back the JSON files cadence writes (run.json, bench.json, law files), whatever is in them.

Size is bounded before parsing and every way a file can be unreadable is one line in the
caller's error type: a hand-edited or damaged file is bad input, never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cadence.errors import CadenceError, LimitError


def read_json(path: "str | Path", limit: int, what: str, error: type[CadenceError] = CadenceError) -> object:
    """The parsed JSON in ``path`` (at most ``limit`` bytes; UTF-8, a BOM allowed)."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the reader; a folder cannot be read
            raise error(f"cannot read {path}: not a regular file; a {what} is a JSON file")
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) > limit:
        raise LimitError(f"{path} has more than {limit:,} bytes; a {what} is limited to {limit:,}")
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise error(f"{path} is not JSON (not UTF-8 text); a {what} is a JSON file") from None
    except RecursionError:
        raise error(f"{path} is not a {what} (JSON nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, or an integer beyond Python's digit limit
        raise error(f"{path} is not JSON ({' '.join(str(e).split())[:120]}); a {what} is a JSON file") from None
