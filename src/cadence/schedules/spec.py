"""Parse a schedule spec string such as ``"wsd(peak=3e-4, warmup=200, decay='20%')"``.

The string is read with ``ast`` and only calls to registered schedules with literal
arguments (numbers, strings, booleans, None, lists, and nested calls) are accepted. It is
never evaluated: a spec cannot run code.

Before ``ast`` sees it, a spec must be valid Unicode text of at most ``MAX_SPEC_CHARS``
characters whose brackets nest at most ``MAX_DEPTH`` deep: ``ast.parse`` recurses on
nesting, so its depth is counted first, in one pass over the text.
"""

from __future__ import annotations

import ast
import warnings
import difflib
import inspect
from typing import Any

from cadence.errors import CadenceError, LimitError, SpecError
from cadence.schedules.base import Schedule, _short_value, short
from cadence.schedules.limits import MAX_DEPTH, MAX_SPEC_CHARS
from cadence.schedules.registry import REGISTRY, register

__all__ = ["parse", "REGISTRY", "register"]


def parse(spec: "str | Schedule") -> Schedule:
    """Build the schedule a spec string describes."""
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"a schedule spec must be a non-empty string like \"cosine(peak=3e-4, warmup=100)\"; "
                        f"got {_short_value(spec)}")
    if len(spec) > MAX_SPEC_CHARS:
        raise LimitError(f"a schedule spec may have at most {MAX_SPEC_CHARS} characters; this one has {len(spec)}")
    try:
        spec.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SpecError(f"a schedule spec must be text; character {e.start + 1} is {spec[e.start]!r}, "
                        "which is not a Unicode character (a lone surrogate)") from None
    _check_nesting(spec)
    try:
        with warnings.catch_warnings():
            # Python warns about some malformed literals ("0.ine") before it fails on them; a spec
            # gets one error line, not a warning as well
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(spec.strip(), mode="eval")
    except (SyntaxError, SyntaxWarning) as e:  # the tokenizer turns the warning into a SyntaxError
        raise SpecError(f"cannot parse schedule spec {_short_value(spec)}: {getattr(e, 'msg', e)} at column "
                        f"{getattr(e, 'offset', '?')}") from None
    except (ValueError, MemoryError, RecursionError) as e:  # NUL bytes; the parser's own stack limit
        raise SpecError(f"cannot parse schedule spec {_short_value(spec)}: {e or type(e).__name__}") from None
    node = tree.body
    if not isinstance(node, ast.Call):
        raise SpecError(f"a schedule spec must be a call like \"cosine(peak=3e-4)\"; got {_short_value(spec)}")
    try:
        return _call(node)
    except RecursionError:  # not reached within MAX_DEPTH; a last line of defence
        raise LimitError(f"schedule spec nests too deeply; at most {MAX_DEPTH} levels are allowed") from None


def _check_nesting(spec: str) -> None:
    """Refuse more than MAX_DEPTH open brackets, or more than MAX_DEPTH unary signs in a row.

    Brackets inside quotes count too: no valid spec has them there, so this only
    changes which error an invalid spec gets.
    """
    depth = signs = 0
    for i, ch in enumerate(spec):
        if ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise LimitError(f"schedule spec nests brackets more than {MAX_DEPTH} deep (at character {i + 1}); "
                                 f"at most {MAX_DEPTH} levels are allowed")
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        if ch in "+-~":
            signs += 1
            if signs > MAX_DEPTH:
                raise LimitError(f"schedule spec has more than {MAX_DEPTH} signs in a row (at character {i + 1})")
        elif not ch.isspace():
            signs = 0


def _call(node: ast.Call) -> Schedule:
    if not isinstance(node.func, ast.Name):
        raise SpecError(f"only schedule names may be called in a spec (column {node.col_offset + 1})")
    name = node.func.id
    cls = REGISTRY.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, REGISTRY, n=1) if len(name) <= 100 else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(f"unknown schedule family {_short_value(name)}{hint}; known: {', '.join(sorted(REGISTRY))}")
    args = [_value(a) for a in node.args]
    kwargs = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise SpecError(f"{name}(): '**' is not allowed in a spec")
        kwargs[kw.arg] = _value(kw.value)
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as e:
        allowed = ", ".join(cls.parameters())
        raise SpecError(f"{name}(): {short(str(e), 200)}; parameters: {allowed}") from None
    try:
        return cls(*args, **kwargs)
    except CadenceError:
        raise
    except (TypeError, ValueError, ArithmeticError) as e:
        raise SpecError(f"{name}(): {short(str(e), 200)}") from None


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Name):
        raise SpecError(f"a spec may not name variables: found {_short_value(node.id)} at column {node.col_offset + 1} "
                        "(write numbers as digits, strings in quotes)")
    raise SpecError(
        f"a spec may hold only numbers, strings, True/False/None, lists and schedule calls; "
        f"found {type(node).__name__} at column {getattr(node, 'col_offset', 0) + 1}"
    )
