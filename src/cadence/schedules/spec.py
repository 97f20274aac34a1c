"""Parse a schedule spec string such as ``"wsd(peak=3e-4, warmup=200, decay='20%')"``.

The string is read with ``ast`` and only calls to registered schedules with literal
arguments (numbers, strings, booleans, None, lists, and nested calls) are accepted. It is
never evaluated: a spec cannot run code.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from typing import Any

from cadence.errors import CadenceError, SpecError
from cadence.schedules.base import Schedule

__all__ = ["parse", "REGISTRY", "register"]

REGISTRY: dict[str, type[Schedule]] = {}


def register(cls: type[Schedule]) -> type[Schedule]:
    REGISTRY[cls.name] = cls
    return cls


def parse(spec: "str | Schedule") -> Schedule:
    """Build the schedule a spec string describes."""
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"a schedule spec must be a non-empty string like \"cosine(peak=3e-4, warmup=100)\"; got {spec!r}")
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as e:
        raise SpecError(f"cannot parse schedule spec {spec!r}: {e.msg} at column {e.offset}") from None
    node = tree.body
    if not isinstance(node, ast.Call):
        raise SpecError(f"a schedule spec must be a call like \"cosine(peak=3e-4)\"; got {spec!r}")
    return _call(node)


def _call(node: ast.Call) -> Schedule:
    if not isinstance(node.func, ast.Name):
        raise SpecError(f"only schedule names may be called in a spec (column {node.col_offset + 1})")
    name = node.func.id
    cls = REGISTRY.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(f"unknown schedule family {name!r}{hint}; known: {', '.join(sorted(REGISTRY))}")
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
        raise SpecError(f"{name}(): {e}; parameters: {allowed}") from None
    try:
        return cls(*args, **kwargs)
    except CadenceError:
        raise
    except (TypeError, ValueError) as e:
        raise SpecError(f"{name}(): {e}") from None


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
        raise SpecError(f"a spec may not name variables: found {node.id!r} at column {node.col_offset + 1} "
                        "(write numbers as digits, strings in quotes)")
    raise SpecError(
        f"a spec may hold only numbers, strings, True/False/None, lists and schedule calls; "
        f"found {type(node).__name__} at column {getattr(node, 'col_offset', 0) + 1}"
    )
