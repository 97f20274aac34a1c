"""Grammar-based hypothesis strategies for every input cadence reads.

Schedules are generated from the registry (``FAMILIES`` and ``COMBINATORS`` with their
real parameter names), so a new family or parameter is fuzzed without editing this file.
Most generated values are well formed, so cases reach evaluation; the rest are extreme
(0, negatives, 1e308, 1e-320, inf and nan spellings, 10**400, booleans, strings, unicode,
lone surrogates), and a share of the texts is mutated or truncated afterwards.

Every strategy returns plain data (strings, bytes, dicts, lists): the checks in
``harness.py`` turn them into files, calls and command lines.
"""

from __future__ import annotations

import inspect
import json
import math

from hypothesis import strategies as st

from cadence.schedules import COMBINATORS, FAMILIES

# -- building blocks ---------------------------------------------------------------------------


def chance(draw, k: int, n: int) -> bool:
    """True with probability k/n; the simplest draw (the one hypothesis starts from) gives False."""
    return draw(st.integers(0, n - 1)) >= n - k


def _include(draw, p: int) -> bool:
    """Whether an optional flag appears (probability p/10); the simplest draw includes the usual ones."""
    u = draw(st.integers(0, 9))
    return u < p if p >= 5 else u >= 10 - p


def weighted(draw, *options):
    """Draw from one of ``(weight, strategy)`` options; the first option is where shrinking goes."""
    total = sum(w for w, _ in options)
    pick = draw(st.integers(0, total - 1))
    for w, strategy in options:
        if pick < w:
            return draw(strategy)
        pick -= w
    raise AssertionError("unreachable")


# Text that a spec, a CSV cell or a flag may carry: anything, including lone surrogates and NUL.
ANY_TEXT = st.text(max_size=12)
NASTY_CHARS = st.sampled_from(
    list("()[],=' \"\\%._-+#:;*/\t\n\r") + ["\x00", "\ud800", "\udcff", "\u3000", "\u00a0", "\u200b", "\ufeff",
                                            "é", "ｃ", "٣", "५", "𝟘", "\u2028", "∞", "\x7f", "\x1b"]
)
NASTY_STRINGS = st.sampled_from([
    "", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-0", "0x10", "None", "null", "true", "[]", "{}",
    "\x00", "\ud800", "é", "ｃｏｓｉｎｅ", "٣", "𝟘", "1" * 400, "-" * 3, "..", "/", "%", "%%", "\n", "'", '"',
])

NUMBER_TEXT_SPECIAL = [
    "0", "-0.0", "1", "-1", "0.5", "1e-3", "3e-4", "1e308", "1.7976931348623157e308", "-1.7976931348623157e308",
    "1e309", "-1e999", "1e-320", "5e-324", "2.2250738585072014e-308", "1e-300", "9007199254740993",
    "18446744073709551616", "9" * 400, "1" + "0" * 4400, "0x10", "0b11", "0o7", "1_000", "1e1_0", "True", "False",
    "None", "nan", "inf", "-inf", "float('nan')", "float('inf')", "'nan'", "'inf'", "'1e-3'", "1j", "...", "b'1'",
    "2**63", "-(1)", "+1.5", "--1", "-+1", "~1", "1 + 1", "(1)", "()", "{}", "{'a': 1}", "lambda: 1",
    "__import__('os')", "x", "-True", "-None", "'1'*10", "-1e-320", "1e-400", "0.0001e400",
]
NUMBER_TEXT = st.one_of(
    st.sampled_from(NUMBER_TEXT_SPECIAL),
    st.integers(-10**6, 10**6).map(str),
    st.integers(-(10**40), 10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: f"'{x!r}'"),
)
GOOD_NUMBER_TEXT = st.one_of(
    st.floats(0.0, 10.0, allow_subnormal=False).map(repr),
    st.sampled_from(["0", "1", "0.1", "1e-3", "3e-4", "0.5", "2", "0.9", "1.0"]),
    st.integers(0, 5).map(str),
)

UNITS = ["", "st", "step", "steps", "ba", "sa", "sample", "samples", "tok", "token", "tokens", "ep", "epoch",
         "epochs", "dur", "%"]
BAD_UNITS = ["x", "Dur", "ST", "µs", " tok", "%%", "stt", "e", "d", "tk", "toks", "k", "ｓｔ", "é", "\u3000st"]
MULTIPLIERS = ["", "K", "k", "M", "B", "G", "T"]
BAD_MULTIPLIERS = ["m", "KK", "b", "P", "E"]
DURATION_NUMBERS = ["0", "1", "2", "3", "5", "10", "20", "50", "100", "0.5", ".5", "5.", "1e3", "1e-3", "2.5e1",
                    "1e400", "1e-320", "1e308", "9" * 40, "-3", "+3", " 3", "nan", "inf", "", "１", "٣", "1_0", "0.0"]


@st.composite
def duration_string(draw):
    """A duration string: mostly well formed ('20%', '0.2dur', '3ep', '2Mtok', '64Ksa', '500st')."""
    good = draw(st.integers(0, 9)) < 7
    if good:
        kind = draw(st.sampled_from(["%", "dur", "st", "ep", "tok", "sa", ""]))
        if kind == "%":
            return f"{draw(st.integers(1, 100))}%"
        if kind == "dur":
            return f"{draw(st.floats(0.001, 1.0)):.3g}dur"
        if kind in ("tok", "sa"):
            mult = draw(st.sampled_from(["", "K", "M"]))
            return f"{draw(st.integers(1, 64))}{mult}{kind}"
        if kind == "ep":
            return f"{draw(st.integers(0, 4))}ep"
        return f"{draw(st.integers(0, 60))}{kind}"
    number = draw(st.sampled_from(DURATION_NUMBERS) | st.integers(-(10**30), 10**30).map(str))
    mult = draw(st.sampled_from(MULTIPLIERS + BAD_MULTIPLIERS))
    unit = draw(st.sampled_from(UNITS + BAD_UNITS))
    space = draw(st.sampled_from(["", "", " ", "\t"]))
    return f"{number}{space}{mult}{unit}"


def quote(text: str, draw=None) -> str:
    """A Python string literal for ``text`` (repr keeps surrogates and NUL as escapes)."""
    return repr(text)


@st.composite
def duration_text(draw):
    """A duration as it appears in a spec: an int, a float or a quoted string."""
    return weighted(
        draw,
        (5, st.integers(0, 60).map(str)),
        (6, duration_string().map(repr)),
        (1, st.integers(-(10**6), 10**400).map(str)),
        (1, NUMBER_TEXT),
        (1, st.one_of(ANY_TEXT, NASTY_STRINGS).map(repr)),
    )


@st.composite
def literal_text(draw, depth: int = 2):
    """Any literal a spec may hold (and some it may not)."""
    options = [
        (4, NUMBER_TEXT),
        (2, st.one_of(ANY_TEXT, NASTY_STRINGS, duration_string()).map(repr)),
        (1, st.sampled_from(["True", "False", "None"])),
    ]
    if depth > 0:
        options.append((1, st.lists(literal_text(depth - 1), max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")))
        options.append((1, st.lists(literal_text(depth - 1), max_size=3).map(lambda xs: "(" + ", ".join(xs) + ",)")))
    return weighted(draw, *options)


# -- specs -------------------------------------------------------------------------------------

DURATION_PARAMS = {"warmup", "decay", "every", "period", "up", "down", "cooldown", "anneal", "duration", "timescale"}
CHOICES = {
    "shape": ["linear", "cosine", "1-sqrt", "exp", "rex", "cos"],
    "cooldown_shape": ["linear", "cosine", "1-sqrt", "exp", "rex"],
    "anneal_shape": ["linear", "cosine", "1-sqrt", "exp", "rex"],
    "mode": ["triangular", "triangular2", "exp_range"],
    "per": ["tok", "sa", "st", "ep", "dur"],
}
BAD_CHOICES = ["", "Cosine", "sqrt", "1-Sqrt", "log", "nan", "%", "\x00", "\ud800", "ｃｏｓ", "linear ", "tokens"]
BOOL_PARAMS = {"three_phase"}
SCHEDULE_PARAMS = {"schedule", "before", "after"}

CLASSES = {cls.name: cls for cls in (*FAMILIES, *COMBINATORS)}
COMBINATOR_NAMES = [cls.name for cls in COMBINATORS]
FAMILY_NAMES = [cls.name for cls in FAMILIES]


def signature(cls):
    """[(name, kind)] of a schedule class's parameters, kind 'var' for ``*schedules``."""
    out = []
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.kind is p.VAR_KEYWORD:
            continue
        out.append((name, "var" if p.kind is p.VAR_POSITIONAL else ("kwonly" if p.kind is p.KEYWORD_ONLY else "pos")))
    return out


class Budget:
    """How many more schedule calls one spec may contain (keeps nested specs small)."""

    def __init__(self, calls: int) -> None:
        self.calls = calls


@st.composite
def good_number(draw):
    return draw(GOOD_NUMBER_TEXT)


@st.composite
def param_value(draw, cls_name: str, param: str, budget: Budget, depth: int):
    """The text of one argument: well formed most of the time, extreme otherwise."""
    nasty = chance(draw, 12, 100)
    if nasty:
        return weighted(draw, (3, NUMBER_TEXT), (2, duration_text()), (2, literal_text()),
                        (1, st.sampled_from(BAD_CHOICES).map(repr)),
                        (1, spec_text(budget=budget, depth=depth + 1)))
    if param in SCHEDULE_PARAMS:
        return draw(spec_text(budget=budget, depth=depth + 1))
    if param == "by":
        return weighted(draw, (3, GOOD_NUMBER_TEXT), (1, spec_text(budget=budget, depth=depth + 1)))
    if param in DURATION_PARAMS:
        if param == "timescale" and draw(st.booleans()):
            return "None"
        return draw(duration_text())
    if param == "at":
        if cls_name == "join":
            return "[" + ", ".join(draw(st.lists(duration_text(), min_size=0, max_size=4))) + "]"
        return draw(duration_text())
    if param in CHOICES:
        return repr(draw(st.sampled_from(CHOICES[param])))
    if param in BOOL_PARAMS:
        return draw(st.sampled_from(["True", "False"]))
    if param == "milestones":
        return "[" + ", ".join(draw(st.lists(duration_text(), max_size=5))) + "]"
    if param == "points":
        pairs = draw(st.lists(st.tuples(duration_text(), GOOD_NUMBER_TEXT), max_size=6))
        return "[" + ", ".join(f"[{p}, {v}]" for p, v in pairs) + "]"
    if param == "totals":
        records = ["[0, " + str(draw(st.integers(1, 100))) + "]"]
        step = 0
        for _ in range(draw(st.integers(0, 3))):
            step += draw(st.integers(1, 30))
            rec = f"[{step}, {step + draw(st.integers(1, 80))}"
            if draw(st.booleans()):
                rec += ", " + repr(draw(st.sampled_from(["replan", "stretch"])))
            records.append(rec + "]")
        return "[" + ", ".join(records) + "]"
    if param in ("floor", "ceiling", "initial", "final", "factor") and chance(draw, 1, 5):
        return "None"
    return draw(GOOD_NUMBER_TEXT)


@st.composite
def spec_text(draw, budget: Budget | None = None, depth: int = 0):
    """One schedule call, possibly with nested combinators, rendered as spec text."""
    if budget is None:
        budget = Budget(draw(st.sampled_from([1, 2, 3, 4, 6, 10, 20, 40])))
    budget.calls -= 1
    combinator = budget.calls > 0 and depth < 30 and chance(draw, 4, 10)
    name = draw(st.sampled_from(COMBINATOR_NAMES if combinator else FAMILY_NAMES))
    cls = CLASSES[name]
    args = []
    by_keyword = False  # once one argument is given by name, the rest must be too
    for param, kind in signature(cls):
        if kind == "var":
            n = draw(st.integers(0, 4)) if chance(draw, 1, 10) else draw(st.integers(2, 3))
            args.extend(draw(spec_text(budget=budget, depth=depth + 1)) for _ in range(n))
            continue
        required = param in SCHEDULE_PARAMS
        if not required and draw(st.integers(0, 9)) < 4:
            by_keyword = True
            continue  # the default
        value = draw(param_value(name, param, budget, depth))
        positional = kind == "pos" and not by_keyword and (draw(st.integers(0, 9)) < 8 if required else chance(draw, 1, 10))
        by_keyword = by_keyword or not positional
        args.append(value if positional else f"{param}={value}")
    if chance(draw, 1, 30):  # a parameter that does not exist, or one given twice
        extra = draw(st.sampled_from(["peek", "lr", "steps", "warmup", "_x", "λ", "total", "schedule"]))
        args.append(f"{extra}={draw(literal_text(1))}")
    if chance(draw, 1, 50):
        args = draw(st.permutations(args))
    sep = draw(st.sampled_from([", ", ",", " , ", ",\n  "]))
    shown = name
    if chance(draw, 1, 50):  # names ast normalises (NFKC) or that do not exist
        shown = draw(st.sampled_from([name.upper(), name + "s", name[:-1], "".join(chr(ord(c) + 0xFEE0) if c.isalpha()
                                                                                   else c for c in name),
                                      "schedules." + name, f"cadence.{name}", "_" + name]))
    return f"{shown}({sep.join(args)})"


@st.composite
def deep_spec(draw):
    """Very deep nesting: combinator chains and nested lists, beyond what the parser accepts."""
    n = draw(st.sampled_from([10, 29, 30, 31, 50, 99, 100, 199, 200, 201, 500, 1000, 3000, 10000]))
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return "scale(" * n + "constant(value=1.0)" + ", by=1.0)" * n
    if kind == 1:
        return "warmup(" * n + "cosine(peak=1.0)" + ", duration=1)" * n
    if kind == 2:
        return "piecewise(points=" + "[" * n + "0, 1" + "]" * n + ")"
    if kind == 3:
        return "join(" * n + "constant()" + ", constant(), at=[1])" * n
    return "clip(" * n + "linear(peak=1.0)" + ", floor=0.1)" * n


@st.composite
def mutate_text(draw, text: str):
    """Random edits: delete, insert, replace or duplicate a slice, or truncate."""
    for _ in range(draw(st.integers(1, 3))):
        n = len(text)
        i = draw(st.integers(0, n))
        op = draw(st.integers(0, 4))
        if op == 0:
            j = draw(st.integers(i, min(n, i + 8)))
            text = text[:i] + text[j:]
        elif op == 1:
            text = text[:i] + draw(st.text(NASTY_CHARS, min_size=1, max_size=3)) + text[i:]
        elif op == 2 and n:
            text = text[:i] + draw(NASTY_CHARS) + text[i + 1:]
        elif op == 3:
            j = draw(st.integers(i, min(n, i + 12)))
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i]
    return text


@st.composite
def spec(draw):
    """A spec string: well formed calls (most), mutated ones, deep ones and arbitrary text."""
    return weighted(
        draw,
        (14, spec_text()),
        (4, spec_text().flatmap(mutate_text)),
        (1, deep_spec()),
        (1, st.text(max_size=40)),
        (1, st.sampled_from(["", " ", "cosine", "cosine(", "cosine()()", "(cosine())", "cosine(peak=1)\n#",
                             "cosine(peak=1); import os", "scale(cosine(), by=cosine()) * 2", "2 * cosine()",
                             "cosine(**{})", "cosine(*[1])", "f'{1}'", "cosine(peak=1) if 1 else 2", "\ud800",
                             "cosine(peak=1)\x00", "\ufeffcosine(peak=1)", "cosine(peak=1e-3,)", "COSINE()"])),
    )


SIMPLE_SPECS = [
    "cosine(peak=1e-3)", "linear(peak=0.1, final=0.01, warmup=2)", "constant(value=0.01)",
    "wsd(peak=1e-3, decay='20%')", "piecewise(points=[[0, 0.1], ['50%', 0.05]])", "rex(peak=1e-2)",
    "sgdr(peak=0.1, period=7, mult=2)", "step(peak=0.1, every=3)", "multistep(peak=0.1, milestones=['50%'])",
    "exponential(peak=0.1, factor=0.9)", "polynomial(peak=0.1, power=2.0)", "inverse_sqrt(peak=0.1, warmup=2)",
    "onecycle(peak=0.1)", "cyclic(low=0.01, peak=0.1, up=3)", "power(peak=0.1, per='st')",
    "infinite(peak=0.1, constant=0.05)", "warmup(cosine(peak=0.1), duration=2)",
    "join(constant(value=0.1), cosine(peak=0.1), at=[1])", "scale(cosine(peak=0.1), by=0.5)",
    "clip(cosine(peak=0.1), floor=0.01)", "decay_from(constant(value=0.1), at=1)",
    "rewarm(cosine(peak=0.1), linear(peak=0.05), at=1, warmup=1)", "replanned(cosine(peak=0.1), totals=[[0, 5]])",
]


@st.composite
def simple_spec(draw):
    """Mostly a valid, cheap spec; for inputs where the schedule is not the point."""
    return weighted(draw, (4, st.sampled_from(SIMPLE_SPECS)), (1, spec()))


# -- totals and rates --------------------------------------------------------------------------

# Around the documented limits (2**26 values at once, 2**53 steps) and far beyond them.
HUGE_TOTALS = [10**7, 2**26, 2**26 + 1, 10**8, 10**9, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 10**30, 10**400]


@st.composite
def total(draw):
    """A run length: mostly small, sometimes large or huge, sometimes not a positive int."""
    return weighted(
        draw,
        (10, st.integers(1, 64)),
        (6, st.integers(65, 5000)),
        (1, st.integers(5001, 200_000)),
        (1, st.sampled_from(HUGE_TOTALS)),
        (1, st.sampled_from([0, -1, -(10**400), True, False, 1.0, 1.5, float("nan"), float("inf"), "100", None,
                             [10], b"1"])),
    )


RATE_VALUES = [None, 1, 2, 32, 64.0, 512, 0.5, 1e-3]
BAD_RATE_VALUES = [0, -1, 0.0, -0.0, float("nan"), float("inf"), 1e308, 5e-324, True, "3", 10**400, [], 2**1024 - 1]


@st.composite
def rates(draw):
    """(samples_per_step, tokens_per_sample, steps_per_epoch), or None for no rates."""
    if draw(st.integers(0, 3)) == 0:
        return None
    def one():
        return weighted(draw, (8, st.sampled_from(RATE_VALUES)), (1, st.sampled_from(BAD_RATE_VALUES)),
                        (1, st.floats(min_value=1e-6, max_value=1e6)))
    return (one(), one(), one())


@st.composite
def schedule_case(draw):
    """One library call: parse(spec).values(total, rates), a step value and the spec round trip."""
    return {"spec": draw(spec()), "total": draw(total()), "rates": draw(rates()),
            "step": draw(st.one_of(st.integers(0, 70), st.sampled_from([-1, 10**6, 2**63, 1.5, "0", None])))}


# -- the torch Scheduler -----------------------------------------------------------------------

FIELDS = ["lr", "weight_decay", "momentum", "beta1", "beta2", "betas", "foo", "params", "", "λ", "initial_lr"]


@st.composite
def json_value(draw, depth: int = 2):
    """Any JSON value, with the special floats Python's json reads (NaN, Infinity)."""
    options = [
        (3, st.sampled_from([None, True, False, 0, -1, 1, 2**63, 10**400, -(10**30), 0.5, 1e308, -0.0, 5e-324,
                             float("nan"), float("inf"), float("-inf"), "", "x", "nan", "\ud800", "\x00"])),
        (2, st.integers()),
        (2, st.floats()),
        (2, st.text(max_size=10)),
    ]
    if depth > 0:
        options.append((1, st.lists(json_value(depth - 1), max_size=4)))
        options.append((1, st.dictionaries(st.text(max_size=6), json_value(depth - 1), max_size=4)))
    return weighted(draw, *options)


@st.composite
def mutate_tree(draw, value, max_edits: int = 3):
    """Structural edits of a JSON-like tree: replace, delete or add a node, or wrap it."""
    value = json.loads(json.dumps(value))
    for _ in range(draw(st.integers(1, max_edits))):
        value = _edit(draw, value)
    return value


def _edit(draw, node):
    if isinstance(node, dict) and node and draw(st.integers(0, 3)) < 3:
        key = draw(st.sampled_from(sorted(node)))
        op = draw(st.integers(0, 5))
        if op == 0:
            del node[key]
        elif op == 1:
            node[draw(st.text(max_size=8))] = draw(json_value())
        elif op == 2:
            node[key] = draw(json_value())
        else:
            node[key] = _edit(draw, node[key])
        return node
    if isinstance(node, list) and node and draw(st.integers(0, 3)) < 3:
        i = draw(st.integers(0, len(node) - 1))
        op = draw(st.integers(0, 4))
        if op == 0:
            del node[i]
        elif op == 1:
            node.insert(i, draw(json_value()))
        else:
            node[i] = _edit(draw, node[i])
        return node
    op = draw(st.integers(0, 5))
    if op == 0:
        return [node]
    if op == 1:
        return {"x": node}
    return draw(json_value())


@st.composite
def torch_case(draw):
    """Scheduler(optimizer, spec or {field: spec}, total_steps, rates, ratios) and a list of calls."""
    n_groups = draw(st.integers(1, 3))
    if chance(draw, 1, 5):
        schedule = {draw(st.sampled_from(FIELDS)): draw(simple_spec())
                    for _ in range(draw(st.integers(1, 3)) if draw(st.integers(0, 9)) else 0)}
    else:
        schedule = weighted(draw, (2, simple_spec()), (1, spec()))
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("step"), st.integers(1, 40)),
        st.tuples(st.just("step_to"), st.one_of(st.integers(0, 5000), st.sampled_from([-1, 2**63, 10**400, 1.5,
                                                                                       True, None, "3"]))),
        st.tuples(st.just("set_total"), st.one_of(st.integers(-5, 6000), st.sampled_from([2**63, 10**400, 1.5, None])),
                  st.sampled_from(["replan", "stretch", "x", None])),
        st.tuples(st.just("roundtrip")),
        st.tuples(st.just("load"), st.integers(0, 2**32)),
        st.tuples(st.just("get_lr")),
    ), max_size=6))
    return {
        "schedule": schedule,
        "field": weighted(draw, (8, st.just("lr")), (2, st.sampled_from(FIELDS))),
        "total": weighted(draw, (6, st.integers(1, 5000)), (1, st.none()), (1, total())),
        "rates": weighted(draw, (3, st.none()), (1, rates())),
        "optimizer": draw(st.sampled_from(["sgd", "adamw", "adam"])),
        "group_lrs": draw(st.lists(st.sampled_from([0.1, 1.0, 0.0, 1e-3, 0.5]), min_size=n_groups, max_size=n_groups)),
        "ratios": weighted(draw, (6, st.none()),
                           (1, st.lists(st.sampled_from([1.0, 0.5, 0.0, -1.0, float("nan"), 2]), min_size=n_groups,
                                        max_size=n_groups).map(lambda r: {"lr": r})),
                           (1, json_value())),
        "ops": ops,
        "garbage": draw(st.lists(json_value(), min_size=1, max_size=3)),
        "mutations": draw(st.lists(st.integers(0, 2**32), max_size=2)),
    }


# -- curve CSVs ----------------------------------------------------------------------------------

COLUMNS = ["step", "lr", "loss", "val_loss", "train_loss", "samples", "x", "", "Step", "loss ", "\ufeffstep", "lr"]
NASTY_CELLS = ["", " ", "nan", "NaN", "inf", "-inf", "1e999", "-1", "0", "-0", "0x10", "1_0", "١", "１", "1e-320",
               "9" * 400, "abc", '"1"', "1,5", "\x00", "True", "None", "1e308", "-1e308", "2.5", "3.0"]


@st.composite
def csv_cell(draw, good, dirty):
    if dirty and chance(draw, 1, 20):
        return weighted(draw, (3, st.sampled_from(NASTY_CELLS)), (1, st.text(max_size=6)))
    return good


@st.composite
def curve_csv(draw):
    """The bytes of a step,lr,loss CSV (or a run's metrics.csv), well formed or broken."""
    if chance(draw, 1, 20):
        return draw(st.binary(max_size=200))
    if chance(draw, 1, 6):
        header = draw(st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=6))
    else:
        header = draw(st.sampled_from([["step", "lr", "loss"], ["step", "loss", "lr"], ["step", "lr", "loss", "x"],
                                       ["step", "samples", "lr", "train_loss", "val_loss"], ["step", "loss"]]))
    n = weighted(draw, (8, st.sampled_from([10, 5, 20, 40, 80])), (1, st.sampled_from([0, 1, 2, 3])))
    peak = weighted(draw, (6, st.sampled_from([1e-3, 0.1, 1.0])), (1, st.sampled_from([0.0, 1e-320, 1e308])))
    base = weighted(draw, (6, st.sampled_from([2.0, 0.5])), (1, st.sampled_from([1e-3, 1e300, 1e-300])))
    gaps = chance(draw, 1, 10)
    dirty = chance(draw, 1, 4)
    rows = []
    step = 0
    for i in range(n):
        step = step + (draw(st.integers(-1, 3)) if gaps else 1) if i else weighted(
            draw, (6, st.just(0)), (1, st.sampled_from([1, -1])))
        lr = peak * (1 - i / max(n, 1))
        loss = base * (1 + 1 / (i + 1))
        cells = {"step": str(step), "lr": repr(lr), "loss": repr(loss), "val_loss": repr(loss) if i % 3 == 2 else "",
                 "train_loss": repr(loss * 1.01), "samples": str(step * 8)}
        row = [draw(csv_cell(cells.get(c, "1"), dirty)) for c in header]
        if dirty and chance(draw, 1, 30):
            row = row[: draw(st.integers(0, len(row)))] if draw(st.booleans()) else row + ["extra"]
        rows.append(row)
    eol = weighted(draw, (8, st.just("\n")), (1, st.just("\r\n")), (1, st.sampled_from(["\r", "\n\n"])))
    text = eol.join(",".join(r) for r in [header] + rows) + (eol if draw(st.booleans()) else "")
    if chance(draw, 1, 8):
        text = draw(mutate_text(text))
    encoding = weighted(draw, (8, st.just("utf-8")), (1, st.sampled_from(["utf-8-sig", "utf-16", "latin-1"])))
    data = text.encode(encoding, errors="surrogatepass" if encoding.startswith("utf-8") else "replace")
    if chance(draw, 1, 20):
        i = draw(st.integers(0, len(data)))
        data = data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
    return data


@st.composite
def curve_case(draw):
    """read_run(path, schedule, total, loss) on a CSV file or a run folder, then a quick fit."""
    schedule = weighted(draw, (5, st.none()), (1, simple_spec()))
    return {
        "csv": draw(curve_csv()),
        "folder": chance(draw, 1, 5),
        "schedule": schedule,
        "total": weighted(draw, (6, st.integers(1, 100) if schedule else st.none()), (1, total()), (1, st.none())),
        "loss": weighted(draw, (6, st.just("val")), (2, st.just("train")), (1, st.sampled_from(["x", None, ""]))),
        "skip_warmup": draw(st.booleans()),
        "fit": weighted(draw, (2, st.none()), (2, st.just("multipower")), (2, st.just("annealing")), (1, st.just("x"))),
        "strict": draw(st.booleans()),
    }


# -- law JSON ------------------------------------------------------------------------------------

def base_laws():
    """Valid law documents, one per registered law (parameters in the middle of their bounds)."""
    from cadence.forecast import LAWS

    docs = []
    for name, cls in LAWS.items():
        law = cls()
        box = law.bounds(3.0)
        params = {}
        for p in cls.params:
            lo, hi = box[p]
            params[p] = math.sqrt(max(lo, 1e-12) * hi) if p in cls.log_params else (lo + hi) / 2
        docs.append({"format": "cadence.forecast.law/1", "law": name, "params": params, "lr_scale": 1e-3,
                     "warmup": "skip", "report": {"curves": {}}, "cadence": "0.1.0"})
    return docs


@st.composite
def law_bytes(draw):
    """A law file: a valid one, a structurally mutated one, or broken text."""
    doc = draw(st.sampled_from(base_laws()))
    kind = draw(st.integers(0, 19))
    if kind < 3:
        value = doc
    elif kind < 15:
        value = draw(mutate_tree(doc))
    elif kind < 17:
        n = draw(st.sampled_from([100, 1000, 10_000, 100_000]))
        return ("[" * n + "]" * n).encode() if draw(st.booleans()) else ('{"a":' * n + "1" + "}" * n).encode()
    elif kind < 18:
        return draw(st.binary(max_size=100))
    else:
        value = draw(json_value())
    text = json.dumps(value, indent=draw(st.sampled_from([None, 2])))
    if chance(draw, 1, 6):
        text = draw(mutate_text(text))
    if chance(draw, 1, 10):
        text = text.replace("1e-", draw(st.sampled_from(["1e-400", "1" + "0" * 5000, "NaN", "Infinity"])), 1)
    prefix = draw(st.sampled_from([b"", b"", b"", b"\xef\xbb\xbf", b"\xff"]))
    return prefix + text.encode("utf-8", errors="surrogatepass")


@st.composite
def law_case(draw):
    return {"law": draw(law_bytes()), "spec": draw(simple_spec()), "total": draw(st.integers(1, 300))}


# -- run.json --------------------------------------------------------------------------------------

CONFIG_VALUES = {
    "workload": ["logreg", "digits", "tiny-lm", "nope", "", "LOGREG", "../logreg"],
    "horizon": [4, 5, 6, 8, 0, -1, 3, 1, "6", "200", "1K"],
    "unit": ["step", "sample", "token", "epoch", ""],
    "micro_batch": [None, 1, 4, 8, 0, 3],
    "skip_nonfinite": [False, True, 0, "yes"],
    "seed": [0, 1, 2, -1],
    "size": ["small", None, "xs", "huge", ""],
    "batch_size": [1, 8, 32, 0, -4],
    "optimizer": ["adamw", "sgd", "adam", ""],
    "weight_decay": [0.0, 0.1, -1.0],
    "clip": [None, 1.0, -1.0, 0.0],
    "eval_every": [1, 2, 10, 0],
    "checkpoint_every": [1, 2, 3, 100, 0, -1],
    "device": ["cpu", "cuda", "cuda:0", "meta", "", "mps"],
}
EXTREME = [None, True, False, 2**63, 10**400, -(10**400), 1e308, float("nan"), float("inf"), "", "x", "\ud800", [],
           {}, [1], {"a": 1}, 1.5, -0.0]


@st.composite
def run_json_case(draw):
    """Edits of a real run's run.json (and sometimes of its other files) before `run --resume`."""
    edits = []
    for _ in range(draw(st.integers(1, 3)) if chance(draw, 1, 3) else 1):
        kind = draw(st.integers(0, 9))
        if kind < 7:
            key = draw(st.sampled_from(sorted(CONFIG_VALUES) + ["channels"]))
            if key == "channels":
                value = weighted(draw, (3, simple_spec().map(lambda s: {"lr": s})),
                                 (1, st.dictionaries(st.sampled_from(FIELDS), simple_spec(), max_size=3)),
                                 (1, json_value()))
            else:
                value = weighted(draw, (6, st.sampled_from(CONFIG_VALUES[key])), (2, st.sampled_from(EXTREME)),
                                 (1, json_value()))
            edits.append(("config", key, value))
        elif kind < 8:
            key = draw(st.sampled_from(["format", "status", "step", "data", "rates", "config", "versions", "threads",
                                        "parameters", "train_seconds", "extra"]))
            edits.append(("top", key, draw(st.one_of(st.sampled_from(EXTREME + ["complete", "running", 2, 4, 0]),
                                                     json_value()))))
        elif kind < 9:
            edits.append(("delete", draw(st.sampled_from(["format", "config", "status", "step", "data", "config.horizon",
                                                          "config.channels", "config.workload", "config.seed"])), None))
        else:
            edits.append(("tree", draw(st.integers(0, 2**32)), None))
    files = []
    if chance(draw, 1, 10):
        files.append((draw(st.sampled_from(["checkpoint.pt", "metrics.csv", "timing.csv", "run.json"])),
                      draw(st.sampled_from(["delete", "truncate", "garbage", "empty", "dir"]))))
    raw = None
    if chance(draw, 1, 15):
        raw = draw(st.one_of(st.binary(max_size=60), st.sampled_from([b"", b"[]", b"null", b"1", b'"x"', b"{",
                                                                       b"[" * 100_000, b"\xef\xbb\xbf{}"])))
    extra = draw(st.sampled_from([[], [], [], ["--steps", "6"], ["--overwrite"], ["logreg"], ["--threads", "1"]]))
    return {"edits": edits, "files": files, "raw": raw, "extra": extra, "stopped": draw(st.booleans())}


# -- command lines --------------------------------------------------------------------------------


class File:
    """An argv item that names a file the harness writes first (``content`` None: only a path)."""

    def __init__(self, name: str, content=None, kind: str = "file") -> None:
        self.name, self.content, self.kind = name, content, kind

    def __repr__(self) -> str:
        if self.content is None:
            return f"File({self.name!r}, kind={self.kind!r})"
        shown = self.content if len(self.content) < 300 else self.content[:300] + b"..."
        return f"File({self.name!r}, {shown!r}, kind={self.kind!r})"


ARG_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12) | \
    st.text(st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF), min_size=1, max_size=3)  # surrogateescape
def mostly(good, bad, k: int = 5):
    """One of ``good`` k times in k+1, else one of ``bad``."""
    return st.integers(0, k).flatmap(lambda u: st.sampled_from(good) if u < k else st.sampled_from(bad))


INT_ARGS = st.integers(0, 5).flatmap(lambda u: st.integers(1, 50).map(str) if u < 5 else st.sampled_from(
    ["0", "-1", "1.5", "1e3", "x", "", " 3", "٣", "+2", "99999999999999999999", "1_0", "0x10"]))
FLOAT_ARGS = mostly(["1", "0.5", "64", "1e-3"], ["0", "-1", "nan", "inf", "1e999", "1e308", "5e-324", "x", "", "1_0",
                                                "٣"])


@st.composite
def out_path(draw, suffix: str = ""):
    """Where a command writes: a fresh name, an existing file or folder, or a path it cannot use."""
    return weighted(
        draw,
        (6, st.sampled_from(["out", "a/b/c", "ü-out", "x y"]).map(lambda n: File(n + suffix, kind="path"))),
        (1, st.sampled_from(["existing.txt", "existing-dir", "."]).map(lambda n: File(n, kind="existing"))),
        (1, st.sampled_from(["/dev/null", "/nonexistent-cadence-fuzz/x" + suffix, "", "-", "..", "x" * 300 + suffix,
                             "out.\udcff" + suffix, "out.png/", "out.xyz"])),
    )


def _flag(draw, name, values, p=5):
    """``[name, value]`` with probability p/10, sometimes without its value or twice."""
    if not _include(draw, p):
        return []
    value = draw(values)
    odd = draw(st.integers(0, 29))
    if odd == 27:
        return [name]
    if odd == 28:
        return [name, value, name, draw(values)]
    if odd == 29:
        return [f"{name}={value}"] if isinstance(value, str) else [name, value]
    return [name, value]


@st.composite
def curve_file(draw):
    return File("curve.csv", draw(curve_csv()))


@st.composite
def law_file(draw):
    return weighted(draw, (4, st.sampled_from(["multipower", "annealing"]).map(lambda n: File(n, kind="law"))),
                    (3, law_bytes().map(lambda b: File("law.json", b))), (1, out_path()))


def _switch(draw, name, p=3):
    return [name] if _include(draw, p) else []


@st.composite
def cli_argv(draw):
    """A command line for one of cadence's commands, from a grammar of its real flags."""
    command = draw(st.sampled_from(
        ["schedule"] * 8 + ["list", "workloads", "recommend", "recommend", "gallery", "run", "run", "bench", "report"]
        + ["forecast predict"] * 3 + ["forecast rank"] * 2 + ["forecast optimize", "forecast fit", "forecast fit",
                                                            "forecast", "other"]))
    d = draw
    if command == "schedule":
        total_arg = weighted(d, (9, st.one_of(st.integers(1, 300).map(str), INT_ARGS)),
                             (1, st.sampled_from([str(t) for t in HUGE_TOTALS[:-1]] + ["1e7", "1" + "0" * 400])))
        argv = ["schedule", d(spec()), *(_flag(d, "--total", st.just(total_arg), 9))]
        huge = total_arg.isdigit() and int(total_arg) > 100_000  # printing millions of rows is work asked for
        argv += ([] if huge else _switch(d, "--csv", 6)) + _flag(d, "--plot", out_path(".png"), 1)
        argv += _flag(d, "--unit", mostly(["st", "sa", "tok", "ep", "dur"], ["x"]), 1) + _switch(d, "--overwrite", 1)
        for f in ("--samples-per-step", "--tokens-per-sample", "--steps-per-epoch"):
            argv += _flag(d, f, FLOAT_ARGS, 2)
    elif command == "list" or command == "workloads":
        argv = [command] + d(st.sampled_from([[], [], ["--help"], ["x"]]))
    elif command == "recommend":
        count = mostly(["1B", "350M", "1.3e9", "20B", "100B", "7e9", "1e12", "4e8", "1T"],
                       ["0", "-1", "1e999", "nan", "x", "1e308", "5e-324", "1KB", "", "1,000",
                        "9" * 400, "1e-300", "1_000"])
        argv = ["recommend", *_flag(d, "--params", count, 9), *_flag(d, "--tokens", count, 9)]
        argv += _flag(d, "--seq-len", INT_ARGS, 5) + _flag(d, "--batch", FLOAT_ARGS, 3)
        argv += _switch(d, "--json") + _switch(d, "--strict")
    elif command == "gallery":
        argv = ["gallery", *_flag(d, "--out", out_path(".png"), 9)]
        argv += _flag(d, "--total", mostly(["5", "2"], ["0", "-1", "x"]), 9) + _switch(d, "--overwrite", 2)
    elif command in ("run", "bench"):
        # logreg and digits train a few steps in well under a second; tiny-lm builds its data for seconds
        workload = d(st.sampled_from(["logreg"] * 6 + ["nope", "", "digits", "LOGREG"]))
        argv = [command] + ([workload] if d(st.integers(0, 9)) < 9 else [])
        steps = st.integers(0, 9).flatmap(lambda u: st.integers(1, 6).map(str) if u < 8 else
                                           st.sampled_from(["0", "-1", "x", "1.5"]))
        if command == "run":
            argv += _flag(d, "--lr", simple_spec(), 6)
            argv += _flag(d, "--out", out_path(), 9) + _switch(d, "--resume", 2) + _switch(d, "--overwrite", 1)
            argv += _flag(d, "--checkpoint-every", INT_ARGS, 2) + _flag(d, "--seed", INT_ARGS, 2)
        else:
            # --plan: the deprecated alias of --candidate (same list, one warning line when the input is accepted)
            argv += sum(([d(st.sampled_from(["--candidate"] * 4 + ["--plan"])),
                          f"{d(st.sampled_from(['a', 'b', 'a', '', 'ü', 'x/y', '.']))}={d(simple_spec())}"]
                         for _ in range(d(st.integers(0, 2)))), [])
            argv += _flag(d, "--out", out_path(), 9) + _flag(d, "--seeds", mostly(["1", "2"], ["0", "x"]), 3)
            argv += _flag(d, "--baseline", mostly(["a", "b"], ["zz"]), 2)
            argv += _flag(d, "--target", FLOAT_ARGS, 2) + _switch(d, "--overwrite", 1) + _switch(d, "--quick", 1)
            argv += _flag(d, "--jobs", mostly(["1"], ["0", "-1", "x"]), 2)
        argv += ["--steps", d(steps)] if d(st.integers(0, 19)) < 19 else []
        argv += _flag(d, "--set", mostly(["weight_decay=linear(peak=0.1)"], ["lr=cosine()", "momentum=constant()",
                                                                 "x", "=", "foo=constant()", "weight_decay=nope("]), 2)
        argv += _flag(d, "--size", mostly(["small"], ["xs", "huge", ""]), 2)
        argv += _flag(d, "--batch-size", mostly(["1", "8"], ["0", "x"]), 2)
        argv += _flag(d, "--optimizer", mostly(["sgd", "adamw"], ["adam"]), 2)
        argv += _flag(d, "--weight-decay", FLOAT_ARGS, 2)
        argv += _flag(d, "--eval-every", mostly(["1", "2"], ["0", "x"]), 2)
        argv += _flag(d, "--threads", mostly(["1"], ["0", "-1", "x"]), 1)
        argv += _flag(d, "--device", mostly(["cpu"], ["cuda", "meta", "", "cuda:9", "xla"]), 2)
        argv += ["--no-progress"] if d(st.integers(0, 9)) < 9 else []
    elif command == "report":
        argv = ["report", weighted(d, (2, st.sampled_from(["bench", "run"]).map(lambda n: File(n, kind="corpus"))),
                                   (1, out_path()))] if d(st.integers(0, 9)) < 9 else ["report"]
    elif command.startswith("forecast "):
        action = command.split()[1]
        argv = ["forecast", action]
        if action == "fit":
            runs = d(st.lists(st.one_of(curve_file(), curve_file(), curve_file(), st.just(File("run", kind="corpus")),
                                        st.just(File("curve", kind="corpus")), out_path()),
                              min_size=0 if chance(d, 1, 20) else 1, max_size=2))
            argv += runs + _flag(d, "-o", out_path(".json"), 9) + _flag(d, "--law", st.sampled_from(
                ["multipower", "annealing", "x"]), 4)
            argv += _flag(d, "--schedule", simple_spec(), 2) + _flag(d, "--total", INT_ARGS, 2)
            argv += _flag(d, "--loss", mostly(["val", "train"], ["x"]), 2) + _switch(d, "--count-warmup", 2)
            argv += _switch(d, "--overwrite", 1)
        else:
            if d(st.integers(0, 19)) < 19:
                argv.append(d(law_file()))
            if action == "predict":
                argv += _flag(d, "--schedule", simple_spec(), 9) + _switch(d, "--csv", 5)
            elif action == "rank":
                for _ in range(d(st.integers(0, 3))):
                    argv += ["--schedule", f"{d(st.sampled_from(['a', 'b', 'a', '', ' ']))}={d(simple_spec())}"]
            if action in ("predict", "rank"):
                argv += _flag(d, "--plot", out_path(".png"), 1) + _switch(d, "--overwrite", 1)
            argv += _flag(d, "--total", st.one_of(st.integers(1, 400).map(str), INT_ARGS), 9)
            if action == "optimize":
                argv += _flag(d, "--peak", FLOAT_ARGS, 9) + _flag(d, "--warmup", INT_ARGS, 4)
                argv += _flag(d, "--csv", out_path(".csv"), 3) + _switch(d, "--overwrite", 1)
    elif command == "forecast":
        argv = ["forecast"] + d(st.sampled_from([[], ["x"], ["--help"]]))
    else:
        argv = d(st.sampled_from([[], ["--version"], ["--help"], ["nope"], ["-x"], ["schedule"], ["--"],
                                  ["schedule", "--help"]]))
    if chance(d, 1, 20):  # an unknown flag, a stray value or an arbitrary string somewhere
        extra = d(st.one_of(st.sampled_from(["--nope", "-", "--", "--total", "--csv=1", "-h"]), ARG_TEXT))
        argv.insert(d(st.integers(0, len(argv))), extra)
    return argv


# -- plans (issue 10) ------------------------------------------------------------------------------
# Plan(channels, horizon, unit, rates, micro_batch=...) driven through values/observe/advance/skip,
# state_dict round trips, tampered states and preview. Signals for the stepping loop are drawn at run
# time from the case's seed and profile (a few hundred steps are too many to draw one by one).
# A share of the cases is drawn "clean" (no malformed part anywhere) so that most plans get built
# and driven; the others may hold a bad value in any part.

PLAN_CHANNELS = ["lr", "weight_decay", "beta1", "momentum", "batch", "loss.z"]
ODD_CHANNELS = ["", "1lr", "a.b.c", "lr ", "λ", "x" * 70, "loss.", ".z", "a-b", "__class__", "BATCH", "batch ",
                "loss.z.w", 3, None, ("lr",)]
MONITORS = ["val_loss", "train_loss", "grad_norm", "loss_z", "val_accuracy", "noise_g2", "x"]
BAD_MONITORS = ["", " ", "x" * 120, 3, None, "\ud800"]
# Specs that hold on any clock (no duration in optimizer steps, which a moving batch refuses).
CLOCK_FREE_SPECS = ["cosine(peak=1e-3)", "cosine(peak=0.1, warmup='5%')", "linear(peak=0.1, final=0.01)",
                    "constant(value=0.01)", "wsd(peak=1e-3, decay='20%')", "rex(peak=1e-2)",
                    "piecewise(points=[[0, 0.1], ['50%', 0.05]])", "onecycle(peak=0.1)",
                    "multistep(peak=0.1, milestones=['50%'])", "warmup(cosine(peak=0.1), duration='10%')",
                    "clip(cosine(peak=0.1), floor=0.01)", "scale(linear(peak=0.1), by=0.5)"]


def _arg(draw, name, good, bad, clean, p_bad=3):
    """``name=value`` text: a good value mostly, a bad one (or any number text) p_bad% of the time."""
    if not clean and chance(draw, p_bad, 100):
        return f"{name}={weighted(draw, (3, st.sampled_from(bad)), (1, NUMBER_TEXT), (1, literal_text(1)))}"
    return f"{name}={draw(st.sampled_from(good))}"


def _args(draw, items, clean, p=4):
    """Each optional ``(name, good, bad)`` included with probability p/10."""
    return [_arg(draw, n, g, b, clean) for n, g, b in items if draw(st.integers(0, 9)) < p]


@st.composite
def inner_spec(draw, clean, depth, others):
    """The schedule under a controller."""
    options = [(8, st.sampled_from(CLOCK_FREE_SPECS)), (3, st.sampled_from(SIMPLE_SPECS))]
    if not clean:
        options.append((1, simple_spec()))
    if depth < 2:
        options.append((2, controller_text(clean, depth + 1, others)))
    return weighted(draw, *options)


@st.composite
def plateau_text(draw, clean=True, depth=0, others=()):
    args = [draw(inner_spec(clean, depth, others))]
    if _include(draw, 6):
        monitor = repr(draw(st.sampled_from(["val_loss", "val_loss", "train_loss", "grad_norm", "loss_z"])))
        args.append(_arg(draw, "monitor", [monitor], [repr(m) for m in BAD_MONITORS] + ["None", "1"], clean))
    args += _args(draw, [
        ("mode", ["'min'", "'max'"], ["'MIN'", "''", "'mean'", "None"]),
        ("factor", ["0.5", "0.1", "0.9", "0.99", "0.25"], ["0", "1", "1.5", "-0.5", "nan", "1e-320", "True"]),
        ("patience", ["0", "1", "2", "5", "10"], ["-1", "1.5", "2.0", "10**10", "10000000000", "True", "'2'"]),
        ("threshold", ["1e-4", "0", "0.1", "0.01"], ["-1", "inf", "nan", "1e308"]),
        ("threshold_mode", ["'rel'", "'abs'"], ["'REL'", "''", "None"]),
        ("cooldown", ["0", "1", "3"], ["-1", "0.5", "1e10"]),
        ("floor", ["0", "1e-5", "0.01", "0.0"], ["-1", "inf", "nan", "1e308"]),
        ("eps", ["1e-8", "0"], ["-1", "inf"]),
    ], clean)
    return f"plateau({', '.join(args)})"


@st.composite
def noise_batch_text(draw, micro=8, clean=True):
    start = draw(st.sampled_from([str(micro * k) for k in (2, 2, 4, 8)] + ([] if clean else ["1", "2"])))
    args = [_arg(draw, "start", [start], ["0", "-1", "nan", "inf", "0.5", "1e308", "10**400"], clean),
            _arg(draw, "max", [str(int(start) * k) for k in (1, 4, 16, 64)], ["0", "1", "nan", "inf", "1e308"], clean)]
    args += _args(draw, [
        ("beta", ["0.9", "0.5", "0", "0.99", "0.95"], ["1", "-0.1", "nan", "1.5"]),
        ("growth", ["1", "1.1", "1.5", "2"], ["0.5", "0", "inf", "nan"]),
        ("min_observations", ["1", "2", "5", "20"], ["0", "-1", "1.5", "2.0", "10**400", "True"]),
    ], clean, p=6)
    if draw(st.integers(0, 9)) == 0:
        args = [a.split("=", 1)[1] for a in args[:2]] + args[2:]  # positional start, max
    return f"noise_batch({', '.join(args)})"


@st.composite
def scale_with_text(draw, clean=True, depth=0, others=("batch",)):
    """scale_with(inner, reference=..., channel=one of ``others``, power=...)."""
    args = [draw(inner_spec(clean, depth, others)),
            _arg(draw, "reference", ["16", "32", "64", "1", "0.5", "128"], ["0", "-1", "nan", "inf", "1e-320"], clean)]
    channel = draw(st.sampled_from(list(others) or ["batch"]))
    if channel != "batch" or _include(draw, 4):
        args.append(_arg(draw, "channel", [repr(channel)], ["'nope'", "''", "1", "None", repr("x" * 120)], clean))
    args += _args(draw, [("power", ["0.5", "1", "-1", "0", "4", "-4", "1.0"], ["5", "-5", "nan", "inf"])], clean)
    return f"scale_with({', '.join(args)})"


@st.composite
def ramp_text(draw, micro=8, clean=True):
    sizes = [str(micro * k) for k in (1, 2, 4, 8, 16)]
    start = draw(st.sampled_from(sizes))
    end = draw(st.sampled_from(sizes + [start]))
    durations = ["'30%'", "'10%'", "'0.2dur'", "'50%'"] + ([] if clean else ["3", "10", "'500sa'", "'2Ktok'", "'1ep'"])
    duration = weighted(draw, (6, st.sampled_from(durations)), (0 if clean else 1, duration_text()))
    shape = weighted(draw, (6, st.sampled_from(["'linear'", "'cosine'", "'exp'", "'doubling'"])),
                     (0 if clean else 1, st.sampled_from(["'Linear'", "''", "'log'", "None"])))
    if shape == "'doubling'" and clean:
        end = str(int(start) * draw(st.sampled_from([1, 2, 4, 8])))
    if not clean and chance(draw, 1, 10):
        start, end = draw(NUMBER_TEXT), draw(NUMBER_TEXT)
    args = [start, end, duration] if draw(st.booleans()) else [f"start={start}", f"end={end}", f"duration={duration}"]
    if _include(draw, 6):
        args.append(f"shape={shape}")
    return f"ramp({', '.join(args)})"


@st.composite
def controller_text(draw, clean=True, depth=0, others=()):
    if others:
        return weighted(draw, (3, plateau_text(clean, depth, others)), (2, scale_with_text(clean, depth, others)))
    return draw(plateau_text(clean, depth, others))


PLAN_NUMBERS = [0.1, 0, 1, 16, 32, 1e-3, 0.5, 2**53, 1e308, 5e-324, -1, -0.0, float("nan"), float("inf"), 10**400,
                True, None, [], {}, b"1"]


@st.composite
def channel_value(draw, name, micro, names=("batch",), clean=True):
    """A channel's value: a spec or controller text, a number, or (not clean) something that is neither."""
    # channels it may read without a cycle: those before it, and the batch (which reads none when clean)
    names = [n for n in names if isinstance(n, str)]
    before = names[:names.index(name)] if name in names else names
    others = tuple(dict.fromkeys([*before, *(["batch"] if "batch" in names and name != "batch" else [])]))
    if name == "batch":
        options = [(4, ramp_text(micro, clean)), (3, noise_batch_text(micro, clean)),
                   (2, st.sampled_from([micro, micro * 2, micro * 4, float(micro * 4)])),
                   (1, st.sampled_from([f"constant(value={micro * 4})", f"linear(peak={micro * 8}, final={micro})",
                                        f"cosine(peak={micro * 16})", f"step(peak={micro * 8}, every='10%')"]))]
        if not clean:
            options += [(1, st.sampled_from([micro * 3 + 1, 1, f"linear(peak={micro * 8})"])), (1, simple_spec()),
                        (1, st.sampled_from(PLAN_NUMBERS)), (1, scale_with_text(clean, 0, others or ("lr",)))]
        return weighted(draw, *options)
    options = [(10, st.sampled_from(CLOCK_FREE_SPECS)), (3, st.sampled_from(SIMPLE_SPECS)),
               (7, plateau_text(clean, 0, others)), (2, ramp_text(micro, clean)),
               (2, st.sampled_from([0.1, 1e-3, 0.9, 0.0, 1, 16]))]
    if others:
        options.append((4, scale_with_text(clean, 0, others)))
    if not clean:
        options += [(2, simple_spec()), (1, st.sampled_from(PLAN_NUMBERS)), (1, spec())]
    return weighted(draw, *options)


PLAN_HORIZONS = ["600K", "2Mtok", "64Ksa", "3ep", "100st", "1Ksa", "4Ktok", "2ep", "1K", "10", "0.5K"]
BAD_PLAN_HORIZONS = ["50%", "0.5dur", "1.5", "2**10", "1e3", "", "x", " 10", "10 ", "-5", "0", None, 0, -1, 1.0,
                     10.0, 10.5, True, 2**53, 2**53 + 1, 10**30, 10**400, float("nan"), float("inf"), [], b"10",
                     2**26 + 1]


@st.composite
def plan_horizon(draw, clean=True):
    options = [(10, st.integers(1, 300)), (2, st.integers(301, 5000)), (2, st.sampled_from(PLAN_HORIZONS))]
    if not clean:
        options += [(1, duration_string()), (2, st.sampled_from(BAD_PLAN_HORIZONS))]
    return weighted(draw, *options)


@st.composite
def plan_unit(draw, clean=True):
    from cadence.time import Unit

    options = [(10, st.sampled_from(["step", "step", "sample", "token"])),
               (2, st.sampled_from(["st", "sa", "tok", "steps", "samples", "tokens", Unit.STEP, Unit.TOKEN]))]
    if not clean:
        options.append((2, st.sampled_from(["epoch", "", "STEP", None, 1, "ep", "dur", Unit.EPOCH, "step "])))
    return weighted(draw, *options)


PLAN_RATE_VALUES = [None, None, 1, 2, 8, 16, 32, 64.0, 0.5, 128, 3]
PLAN_BAD_RATES = [0, -1, float("nan"), float("inf"), 1e308, 5e-324, True, "3", 10**400, 1e-3]
TOKEN_UNITS = ("token", "tok", "tokens")


@st.composite
def plan_rates(draw, unit="step", clean=True):
    """(samples_per_step, tokens_per_sample, steps_per_epoch), None, or something that is not Rates."""
    token = unit in TOKEN_UNITS or getattr(unit, "value", None) == "tok"
    if not token and draw(st.integers(0, 3)) == 0:
        return None
    if not clean and draw(st.integers(0, 4)) == 0:
        return ("not-rates", draw(st.sampled_from([(1, 2, 3), {"samples_per_step": 8}, "8", 8])))
    rates = [draw(st.sampled_from(PLAN_RATE_VALUES)) for _ in range(3)]
    if token and rates[1] is None and (clean or draw(st.integers(0, 4))):
        rates[1] = draw(st.sampled_from([1, 4, 16, 128, 0.5, 3]))
    if not clean and draw(st.integers(0, 2)) == 0:
        rates[draw(st.integers(0, 2))] = draw(st.sampled_from(PLAN_BAD_RATES))
    return tuple(rates)


SIGNAL_VALUES = [None, 0.0, 1.0, 1.5, -1.0, 1e308, -1e308, 5e-324, -0.0, float("nan"), float("inf"), float("-inf"),
                 0, 7, 2**70, 10**400, -(10**400), True, False, "1.0", "", b"1", [], {}, 1j]


def _numpy_signals():
    import numpy as np

    return [np.float32("nan"), np.float32(1.25), np.float16(65504), np.float64("inf"), np.int64(3), np.int8(-1),
            np.bool_(True), np.uint64(2**63), np.longdouble(1.5)]


@st.composite
def explicit_signals(draw):
    keys = st.sampled_from(MONITORS + PLAN_CHANNELS) | st.text(max_size=4) | st.integers(-2, 2)
    values = st.sampled_from(SIGNAL_VALUES + _numpy_signals())
    if chance(draw, 1, 10):
        return draw(st.sampled_from([None, [], "val_loss", [("val_loss", 1.0)], 1.0]))
    return draw(st.dictionaries(keys, values, max_size=4))


ADVANCE_ARGS = [None, None, None, 0, 1, 8, 16, 32, 64, -1, 1.5, 2.0, True, 2**53, 2**53 + 1, 10**400, float("nan"),
                "8", []]


@st.composite
def plan_ops(draw):
    """What the case does with the plan, in order (the harness caps the total steps)."""
    import numpy as np

    step_op = st.tuples(st.just("steps"), st.integers(1, 200),
                        st.sampled_from(["clean", "clean", "clean", "noisy", "noisy", "hostile", "silent"]),
                        st.integers(0, 2**32))
    other = st.one_of(
        st.tuples(st.just("observe"), explicit_signals()),
        st.tuples(st.just("advance"), st.sampled_from(ADVANCE_ARGS + [np.int64(16)]), st.sampled_from(ADVANCE_ARGS)),
        st.tuples(st.just("skip")),
        st.tuples(st.just("roundtrip")),
        st.tuples(st.just("tamper"), st.integers(0, 2**32)),
        st.tuples(st.just("refuse"), st.integers(0, 60)),
        st.tuples(st.just("preview"), st.sampled_from([None, None, 1, 5, 100, 0, -1, 1.5, True, 2**70])),
        st.tuples(st.just("set_horizon"), st.sampled_from([1, 50, 100, 400, 10**6, 0, -1, 1.5, None, 2**53 + 1]),
                  st.sampled_from(["replan", "stretch", "x", None])),
    )
    ops = [draw(step_op)] if draw(st.integers(0, 9)) < 8 else []
    ops += draw(st.lists(st.one_of(step_op, other, other), max_size=7))
    if draw(st.integers(0, 9)) < 6:
        ops.append(("roundtrip",))
    return ops


@st.composite
def plan_channels(draw, micro, clean=True):
    if not clean and chance(draw, 1, 15):
        return draw(st.sampled_from([{}, [], "lr", None, [("lr", "cosine(peak=1)")], 5]))
    n = draw(st.integers(1, 4))
    names = draw(st.lists(st.sampled_from(PLAN_CHANNELS), min_size=n, max_size=n, unique=True))
    if not clean and chance(draw, 1, 8):
        names.append(draw(st.sampled_from(ODD_CHANNELS)))
    if not clean and chance(draw, 1, 20):  # about the limit of 64 channels
        names += [f"c{i}" for i in range(draw(st.sampled_from([59, 60, 64])))]
    return {name: draw(channel_value(name, micro, names=tuple(n for n in names if isinstance(n, str)), clean=clean))
            for name in names}


@st.composite
def plan_case(draw):
    """One Plan built from generated channels, horizon, unit, rates and micro_batch, and what is done to it."""
    import numpy as np

    clean = draw(st.integers(0, 9)) < 6
    micro = draw(st.sampled_from([1, 2, 4, 8, 8, 16]))
    unit = draw(plan_unit(clean))
    options = [(3, st.just("absent")), (2, st.just(None)), (8, st.just(micro))]
    if not clean:
        options.append((2, st.sampled_from([0, -1, 3, 2.0, True, "8", np.int64(8), 10**400, micro * 3])))
    channels = draw(plan_channels(micro, clean))
    domains = {}
    if draw(st.integers(0, 19)) < 7:  # the data channels and the run's domains (docs/data.md)
        if clean or draw(st.integers(0, 9)) < 8:
            domains = {"domains": draw(plan_domains(clean))}
        if isinstance(channels, dict) and (not clean or domains) and draw(st.integers(0, 9)) < 9:
            channels = {**channels, **draw(data_channels(domains.get("domains", ()), clean))}
    return {
        "channels": channels,
        **domains,
        "horizon": draw(plan_horizon(clean)),
        "unit": unit,
        "rates": draw(plan_rates(unit, clean)),
        "micro_batch": weighted(draw, *options),
        "ops": draw(plan_ops()),
        "preview_check": draw(st.integers(0, 9)) < 7,
        "guards": draw(plan_guards(clean)),
    }


@st.composite
def plan_guards(draw, clean=True):
    """A plan's guards (issue 11): mostly none or small valid windows (so that they fire), sometimes junk."""
    if draw(st.integers(0, 9)) < 5:
        return None
    guards = {}
    if draw(st.booleans()):
        guards["loss_spike"] = {"window": draw(st.integers(2, 16)), "min_history": 2,
                                "sigma": draw(st.sampled_from([1.0, 3.0, 6.0])), "max_in_a_row": draw(st.integers(1, 5))}
    if draw(st.booleans()) or not guards:
        guards["grad_spike"] = {"window": draw(st.integers(2, 16)), "min_history": 2}
    if draw(st.booleans()):
        guards["rollback"] = {"spikes": draw(st.integers(1, 3)), "within": draw(st.integers(3, 20))}
    if not clean and draw(st.integers(0, 3)) == 0:
        guards = draw(st.sampled_from([{"loss_spike": {"window": 1}}, {"rollback": {}}, {"x": {}}, [], "loss_spike",
                                       {"loss_spike": {"sigma": float("nan")}}, {"grad_spike": {"signal": "x"}},
                                       {"loss_spike": None}, {"loss_spike": {"window": 10**400}}]))
    return guards


# -- plan files (issue 10) -------------------------------------------------------------------------

PLAN_FILE_SETTINGS_VALUES = {
    "batch_size": [8, 16, 32, 0, -1, "8", 1.5, True, 10**20],
    "micro_batch": [8, 4, 16, 3, 0, None, "x"],
    "eval_every": [1, 2, 3, 0, "x"],
    "seed": [0, 1, -1, 2**70, "x"],
    "checkpoint_every": [1, 2, 100, 0],
    "optimizer": ["adamw", "sgd", "adam", ""],
    "weight_decay": [0.0, 0.01, -1, "x"],
    "clip": [None, 1.0, -1.0, 0],
    "skip_nonfinite": [False, True, "yes"],
    "device": ["cpu", "cuda", "meta", ""],
    "size": [None, "small", "huge"],
    "workload": ["logreg", "digits", "x"],
}
YAML_TAGS = [
    '!!python/object/apply:os.system ["touch PWNED"]', "!!python/object/apply:builtins.exec ['open(\"PWNED\", \"w\")']",
    "!!python/name:os.system", "!!python/module:os", "!!python/object/new:builtins.dict {}", '!!binary "aGk="',
    "!!set {a, b}", "!!timestamp 2001-12-14", "!!omap [{a: 1}]", "!custom 1", "!!str 5", "!!int '5'",
    "!!float 'nan'", "!!python/tuple [1, 2]", "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch PWNED']",
    "!!null ''", "!!bool yes",
]


def billion_laughs(depth: int, width: int = 9) -> list[str]:
    """YAML lines defining anchors l0..l<depth>, each a list of ``width`` aliases to the previous one,
    as the items of a list under key ``seed`` (a setting the plan file may hold); the last is *l<depth>."""
    lines = ["seed:", '  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, depth + 1):
        lines.append(f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return lines


@st.composite
def plan_doc(draw, run: bool = False, small: bool = False, domains=None):
    """A plan file's mapping: mostly valid (a run's: tiny horizons), sometimes with wrong types or keys.
    ``small``: no horizon past 20,000 units (for --csv, which prints a row per step: work asked for).
    ``domains``: the run's domains, for data channels (a mixture object names them; a mixer needs --domains)."""
    micro = draw(st.sampled_from([4, 8, 16]))
    n = draw(st.integers(1, 3))
    extra = ["weight_decay", "batch", "batch", "momentum", "loss.z"] if run else ["weight_decay", "batch", "momentum",
                                                                                   "loss.z"]
    names = ["lr"] + draw(st.lists(st.sampled_from(extra), max_size=n - 1, unique=True))
    channels = {}
    for name in names:
        if run:
            channels[name] = draw(run_channel(name, micro))
        else:
            channels[name] = draw(channel_value(name, micro, names=tuple(names), clean=draw(st.integers(0, 9)) < 7))
            if not isinstance(channels[name], (str, int, float)) or isinstance(channels[name], bool):
                channels[name] = 0.1 if not chance(draw, 1, 4) else channels[name]
    doc = {}
    if run:
        unit = draw(st.sampled_from(["step", "step", "step", "sample", None]))
        if unit == "sample":
            doc["horizon"] = draw(st.sampled_from([64, 100, "128sa", "200"]))
        else:
            doc["horizon"] = draw(st.integers(3, 8))
        if unit is not None:
            doc["unit"] = unit
        doc["eval_every"] = draw(st.sampled_from([1, 2, 3]))
        if "batch" in channels or _include(draw, 2):
            doc["micro_batch"] = micro
            doc["batch_size"] = micro * 2 if "batch" not in channels else None
            if doc["batch_size"] is None:
                del doc["batch_size"]
        if _include(draw, 3):
            doc["checkpoint_every"] = draw(st.sampled_from([1, 2, 100]))
        if _include(draw, 2):
            doc["seed"] = draw(st.integers(0, 3))
        if _include(draw, 2):
            doc["optimizer"] = draw(st.sampled_from(["sgd", "adamw"]))
        if "momentum" in channels and _include(draw, 8):
            doc["optimizer"] = "sgd"  # adamw has no momentum to drive
        if _include(draw, 1):
            doc["workload"] = "logreg"
    else:
        if _include(draw, 8):
            big = [] if small else ["2M", "600K", "64Ksa", "2Mtok"]
            huge = [] if small else [10**7, 2**26 - 1]
            doc["horizon"] = weighted(draw, (12, st.integers(1, 400)), (2, st.integers(401, 20_000)),
                                      (3, st.sampled_from(big + ["3ep", "1Ksa", "4Ktok", "50%", "10", "1e3", "x", ""])),
                                      (1, st.sampled_from(huge + [2**26 + 1, 2**53, 10**30, 0, -1, 1.5, True, None, [],
                                                                  {}, float("nan"), float("inf")])))
        if _include(draw, 4):
            doc["unit"] = weighted(draw, (8, st.sampled_from(["step", "sample", "token"])),
                                   (1, st.sampled_from(["st", "tok", "epoch", "", None, 1, [], "STEP"])))
        for key in draw(st.lists(st.sampled_from(sorted(PLAN_FILE_SETTINGS_VALUES)), max_size=3, unique=True)):
            doc[key] = draw(st.sampled_from(PLAN_FILE_SETTINGS_VALUES[key]))
        if "batch" in channels and _include(draw, 8):
            doc["micro_batch"] = micro
        if domains is not None:  # the data channels (docs/data.md)
            channels.update(draw(data_channels(domains, clean=draw(st.integers(0, 9)) < 7)))
        if chance(draw, 1, 6):  # the run settings of the data channels and continual pre-training
            for key in draw(st.lists(st.sampled_from(sorted(DATA_FILE_SETTINGS_VALUES)), min_size=1, max_size=2,
                                     unique=True)):
                doc[key] = draw(st.sampled_from(DATA_FILE_SETTINGS_VALUES[key]))
    if run and chance(draw, 1, 10):  # a logreg run has no domains or difficulty: refused in one line, before training
        if draw(st.booleans()):
            channels["mixture"] = draw(st.sampled_from(["odm()", {"code": 1, "prose": 1}, "mix(code=1, prose=2)"]))
        else:
            key = draw(st.sampled_from(sorted(DATA_FILE_SETTINGS_VALUES)))
            doc[key] = draw(st.sampled_from(DATA_FILE_SETTINGS_VALUES[key]))
    doc["channels"] = channels
    if chance(draw, 1, 8):  # wrong types and unknown keys
        what = draw(st.integers(0, 5))
        if what == 0:
            doc["channels"] = draw(st.sampled_from([[], "lr", None, 1, {}, [["lr", "cosine(peak=1)"]],
                                                    {"lr": ["cosine(peak=1)"]}, {"lr": {"peak": 1}}, {"lr": True},
                                                    {"lr": None}, {1: "cosine(peak=1)"}, {"lr": 10**400}]))
        elif what == 1:
            doc[draw(st.sampled_from(["steps", "lr", "Channels", "horizon_steps", "plan", "total", "units", "x", ""]))] = 1
        elif what == 2:
            del doc["channels"]
        elif what == 3:
            doc["horizon"] = draw(st.sampled_from([[], {}, 1.5, True, 10**400, "1e999", -(10**30)]))
        elif what == 4:
            doc = draw(st.sampled_from([[doc], "plan", 1, None, [], []]))
        else:
            doc = draw(mutate_tree(doc))
    return doc


@st.composite
def run_channel(draw, name, micro):
    """A channel a small logreg run can honour (logreg measures val_loss, train_loss, grad_norm)."""
    if name == "batch":
        return weighted(draw, (3, st.sampled_from([f"ramp({micro}, {micro * 4}, 3)", f"ramp({micro * 2}, {micro * 8}, "
                                                   f"'50%', shape='doubling')", micro * 2])),
                        (2, st.just(f"noise_batch(start={micro * 2}, max={micro * 8}, min_observations=1)")))
    if name == "lr":
        return weighted(draw, (3, st.sampled_from(SIMPLE_SPECS[:8])),
                        (2, st.sampled_from(["plateau(cosine(peak=0.1), patience=0, factor=0.5)",
                                             "plateau(linear(peak=0.1), monitor='train_loss', patience=1)",
                                             "plateau(warmup(cosine(peak=0.1), 2), mode='min', cooldown=1, patience=0)",
                                             "scale_with(cosine(peak=0.1), reference=16)",
                                             "scale_with(plateau(cosine(peak=0.1), patience=0), reference=8, power=1)",
                                             "plateau(cosine(peak=0.1), monitor='val_accuracy', mode='max', patience=0)"
                                             ])))
    if name == "loss.z":
        return 0.01  # logreg has no z-loss: refused, one line
    return draw(st.sampled_from([0.01, "linear(peak=0.01)", "cosine(peak=0.9)", 0.9]))


def _yaml_text(draw, doc) -> str:
    import yaml

    style = draw(st.sampled_from([None, False, True]))
    return yaml.safe_dump(doc, default_flow_style=style, allow_unicode=draw(st.booleans()), sort_keys=draw(st.booleans()))


@st.composite
def plan_file_bytes(draw, suffix: str, run: bool = False, small: bool = False, domains=None):
    """The bytes of a plan file: a rendered plan, or a broken one (duplicates, tags, alias bombs, nesting, bytes)."""
    yaml_like = suffix.lower() in (".yaml", ".yml")
    doc = draw(plan_doc(run=run, small=small, domains=domains))
    kind = 0 if run and draw(st.integers(0, 9)) < 9 else draw(st.integers(0, 39))
    try:
        text = _yaml_text(draw, doc) if yaml_like else json.dumps(doc, indent=draw(st.sampled_from([None, 2])))
    except (TypeError, ValueError, OverflowError):
        text = "channels: {lr: 1}\n"
    if kind < 22:
        pass
    elif kind < 24:  # a key given twice, at the top or inside channels
        if yaml_like:
            text = draw(st.sampled_from([text + "horizon: 5\n", "channels:\n  lr: 'cosine(peak=1)'\n  lr: 0.1\n"
                                         "horizon: 10\n", text + "channels: {lr: 0.1}\n", "horizon: 10\nhorizon: 10\n"
                                         "channels: {lr: 0.1}\n", "channels: {lr: 0.1, lr: 0.1}\n",
                                         "channels: {lr: 0.1, 'lr': 0.2}\n"]))
        else:
            text = draw(st.sampled_from(['{"horizon": 5, "horizon": 6, "channels": {"lr": 0.1}}',
                                         '{"channels": {"lr": 0.1, "lr": "cosine(peak=1)"}, "horizon": 10}',
                                         '{"channels": {"lr": 0.1}, "channels": {"lr": 0.1}}']))
    elif kind < 27 and yaml_like:  # YAML tags: never constructed
        tag = draw(st.sampled_from(YAML_TAGS))
        where = draw(st.integers(0, 4))
        base = 'channels: {lr: "cosine(peak=1)"}\nhorizon: 10\n'
        text = [f"horizon: {tag}\nchannels: {{lr: 0.1}}\n", f"channels:\n  lr: {tag}\nhorizon: 10\n",
                f"{base}seed: {tag}\n", f"{base}unit: {tag}\n", f"{tag}\n"][where]
    elif kind < 30 and yaml_like:  # anchors and aliases: a billion laughs, and ordinary ones
        depth = draw(st.sampled_from([2, 4, 6, 8, 9, 10]))
        lines = billion_laughs(depth)
        target = draw(st.sampled_from(["unit", "horizon", "channel", "extra", "setting", "key", "merge", "legit"]))
        alias = f"*l{depth}"
        tail = {"unit": [f"unit: {alias}", 'channels: {lr: "cosine(peak=1)"}', "horizon: 10"],
                "horizon": ['channels: {lr: "cosine(peak=1)"}', f"horizon: {alias}"],
                "channel": [f'channels: {{lr: "cosine(peak=1)", weight_decay: {alias}}}', "horizon: 10"],
                "extra": ['channels: {lr: "cosine(peak=1)"}', "horizon: 10", f"nope: {alias}"],
                "setting": ['channels: {lr: "cosine(peak=1)"}', "horizon: 10", f"device: {alias}"],
                "key": ['channels: {lr: "cosine(peak=1)"}', "horizon: 10", f"? {alias}\n: 1"],
                "merge": ['channels: {lr: "cosine(peak=1)"}', "horizon: 10", f"<<: {alias}"],
                "legit": ["base: &b {lr: 'cosine(peak=1)'}", "channels: *b", "horizon: 10"]}[target]
        text = "\n".join(lines + tail) + "\n" if target != "legit" else "\n".join(tail) + "\n"
    elif kind < 32:  # deep nesting
        n = draw(st.sampled_from([50, 500, 1000, 5000, 50_000]))
        text = draw(st.sampled_from([f"channels: {'[' * n}{']' * n}\n", "channels:\n" + "".join(
            "  " * (i + 1) + f"k{i}:\n" for i in range(min(n, 3000))), '{"channels": ' + "[" * n + "]" * n + "}",
            '{"channels": ' + '{"a": ' * n + "1" + "}" * n + "}"]))
    elif kind < 33:  # huge numbers
        text = draw(st.sampled_from(["channels: {lr: 1.0e+999}\nhorizon: 10\n", "channels: {lr: .inf}\nhorizon: 10\n",
                                     "channels: {lr: .nan}\nhorizon: 10\n", "channels: {lr: 0.1}\nhorizon: 1" + "0" * 400
                                     + "\n", "channels: {lr: 1" + "0" * 5000 + "}\nhorizon: 10\n",
                                     '{"channels": {"lr": 1e999}, "horizon": 10}', '{"channels": {"lr": NaN}}',
                                     '{"channels": {"lr": 0.1}, "horizon": 1' + "0" * 5000 + "}",
                                     '{"channels": {"lr": Infinity}, "horizon": 10}']))
    elif kind < 35:
        text = draw(mutate_text(text))
    elif kind < 36:
        text = draw(st.sampled_from(["", "null", "---\n...\n", "---\na: 1\n---\nb: 2\n", "[]", "1", "\t", "channels:\n\t"
                                     "lr: 0.1\n", "%YAML 1.1\n---\nchannels: {lr: 0.1}\n", "\x00", "channels: {lr: 0.1}"
                                     " # comment\nhorizon: 10 # 10 steps\n", "channels: {lr: 0.1}\r\nhorizon: 10\r\n"]))
    elif kind < 37:  # over the size limit
        return b"# " + b"x" * (1 << 20) + b"\nchannels: {lr: 0.1}\n"
    else:  # bytes that are not UTF-8, a BOM, raw binary
        data = text.encode("utf-8", "surrogatepass")
        return draw(st.sampled_from([b"\xff\xfe" + text.encode("utf-16-le"), b"\xef\xbb\xbf" + data,
                                     text.replace("lr", "l\xe9").encode("latin-1", "replace"), data + b"\xed\xa0\x80",
                                     b"\x80" + data])) if chance(draw, 4, 5) else draw(st.binary(max_size=80))
    return text.encode("utf-8", errors="surrogatepass")


DATA_FILE_SETTINGS_VALUES = {
    "init": ["runs/none", "", 1, None, "."],
    "init_optimizer": [True, False, "yes", None],
    "dense_eval": [[1, 4], [0, 4], "1:4", [1], "x", [2, 10**400]],
    "difficulty": ["length", "reference=runs/none", "column=x.csv:y", "x", "", 3],
}
RATE_FLAG_VALUES = mostly(["1", "8", "32", "128", "0.5", "3"], ["0", "-1", "nan", "x", "1e308", "5e-324"], k=12)


@st.composite
def plan_file_case(draw):
    """`cadence schedule --plan FILE [--csv|--plot]` on a generated file, or a tiny `cadence run logreg --plan`."""
    command = draw(st.sampled_from(["schedule", "schedule", "csv", "csv", "plot"] * 4 + ["run", "run"]))  # 1 in 11
    run = command == "run"
    suffix = weighted(draw, (8, st.sampled_from([".yaml", ".json", ".yml"])),
                      (1, st.sampled_from([".txt", "", ".YAML", ".json.bak", ".Yml"])))
    domains = None if run or not chance(draw, 1, 4) else list(draw(plan_domains(True)))
    content = draw(plan_file_bytes(suffix if suffix.lower() in (".yaml", ".yml", ".json") else ".yaml", run=run,
                                   small=command == "csv", domains=domains))
    flags = []
    if domains is not None and _include(draw, 6):  # a mixer needs them; a mixture object names its own
        flags += ["--domains", weighted(draw, (8, st.just(",".join(domains))), (1, st.sampled_from(
            ["code", "code,code", "", "code,,prose", " code , prose ", "a,b", ",".join(reversed(domains))])))]
    if run:
        if chance(draw, 1, 10):
            flags = draw(st.sampled_from([["--lr", "cosine(peak=0.1)"], ["--steps", "4"], ["--seed", "1"],
                                          ["--micro-batch", "8"], ["--unit", "step"]]))
    else:
        for f in ("--samples-per-step", "--tokens-per-sample", "--steps-per-epoch"):
            if _include(draw, 3):
                flags += [f, draw(RATE_FLAG_VALUES)]
        if chance(draw, 1, 20):
            flags += draw(st.sampled_from([["cosine(peak=1)"], ["--total", "10"], ["--unit", "tok"], ["--overwrite"]]))
    return {"suffix": suffix, "content": content, "command": command, "flags": flags}


# -- the data channels (mixture, curriculum, sample_weights; docs/data.md) ---------------------------
# A case may bind the run's domains (Plan(..., domains=...)): a mixture is an object {domain: weight or spec},
# a mix(...) spec or a mixer (odm, doremi, aioli); a curriculum is pace(...) or a bandit over difficulty
# buckets (sec, dump); sample_weights is reweight(...). The ops' signals then carry train_loss/<d>,
# probe_loss/<d> and bucket_loss/<k> (see harness._random_signals), so the controllers really move.

DOMAIN_NAMES = ["code", "prose", "numbers", "tests", "web"]
BAD_DOMAINS = [["code"], ["code", "code"], ["code", 1], [], "code,prose", ["code", ""], ["code", None], ("a", "b", "a"),
               {"code": 1}, 5, ["x" * 300, "y"], ["code", "prose", b"web"]]
MIX_WEIGHTS = [0.5, 1, 0.0, 2, 0.25, 1e-3, "0.5", "linear(peak=0.2, final=0.4)", "cosine(peak=1.0)",
               "constant(value=0.3)", "wsd(peak=1.0, decay='20%')"]
BAD_MIX_WEIGHTS = [-1, -0.0, float("nan"), float("inf"), True, None, {"a": 1}, [0.5], "x", "", "nan", "-1",
                   "odm()", "plateau(cosine(peak=1), patience=0)", 10**400, 1e308, "cosine(", "mix(a=1)"]
LOSS_LISTS = [[2.0, 2.5, 3.0, 1.5, 2.2], [0.0, 0.0, 0.0, 0.0, 0.0], [1e308, 1, 1, 1, 1]]
BAD_LOSS_ITEMS = ["nan", "inf", "-1", "'x'", "None", "True", "[]", "1e999"]


@st.composite
def plan_domains(draw, clean=True):
    """The run's domains: 2-5 distinct names, or (not clean) one name, duplicates, non-strings, empty."""
    if not clean and chance(draw, 1, 6):
        return draw(st.sampled_from(BAD_DOMAINS))
    n = draw(st.integers(2, 5))
    names = draw(st.permutations(DOMAIN_NAMES))[:n]
    return names if draw(st.booleans()) else tuple(names)


def _loss_list(draw, n, clean):
    """reference_loss's text: n numbers (a wrong count or a bad item when not clean)."""
    k = n if clean or not chance(draw, 1, 4) else draw(st.sampled_from([0, 1, n - 1, n + 1]))
    items = [repr(draw(st.sampled_from([2.0, 2.5, 3.0, 1.5, 0.0, 4.25]))) for _ in range(max(k, 0))]
    if not clean and items and chance(draw, 1, 5):
        items[draw(st.integers(0, len(items) - 1))] = draw(st.sampled_from(BAD_LOSS_ITEMS))
    return "[" + ", ".join(items) + "]"


@st.composite
def mixer_text(draw, n, clean=True):
    """odm(...), doremi(reference_loss=[...]) or aioli(...) with small rounds, sweeps and probe_every."""
    kind = draw(st.sampled_from(["odm", "doremi", "doremi", "aioli", "aioli"]))
    if kind == "odm":
        args = _args(draw, [("alpha", ["0.9", "0.5", "0", "0.99"], ["1", "-0.1", "nan", "inf"]),
                            ("warmup", ["0", "1", "3", "10"], ["-1", "1.5", "nan", "10**400"]),
                            ("importance", ["'none'", "'weight'"], ["'x'", "None", "''"])], clean)
    elif kind == "doremi":
        args = [f"reference_loss={_loss_list(draw, n, clean)}"] if draw(st.integers(0, 9)) < 8 else []
        args += _args(draw, [("eta", ["1.0", "0.5", "2", "10"], ["0", "-1", "nan", "inf"]),
                             ("smoothing", ["1e-3", "0", "0.1", "1"], ["-0.1", "1.5", "nan"]),
                             ("every", ["1", "2", "5"], ["0", "-1", "1.5"]),
                             ("beta", ["0.9", "0", "0.5"], ["1", "-1", "nan"]),
                             ("follow", ["'current'", "'average'", "'prior'"], ["'x'", "None"]),
                             ("prior", ["[" + ", ".join(["1"] * n) + "]", "[" + ", ".join(["0.5"] * n) + "]"],
                              ["[0]", "[-1, 1]", "[]", "'x'", "[" + ", ".join(["0"] * n) + "]"])], clean)
    else:
        args = [_arg(draw, "rounds", ["1", "1", "2", "3"], ["0", "-1", "1.5", "10**6", "True"], clean),
                _arg(draw, "sweeps", ["1", "2"], ["0", "-2", "2.5"], clean),
                _arg(draw, "probe_every", ["1", "1", "2", "4"], ["0", "-1", "1.5", "nan"], clean)]
        args = [a for a in args if draw(st.integers(0, 9)) < 8]
        args += _args(draw, [("delta", ["0.128", "0.5", "0.9"], ["0", "1", "-0.1", "nan"]),
                             ("eps", ["0.75", "0", "0.5"], ["1", "-1", "nan"]),
                             ("eta", ["0.2", "1", "5"], ["0", "-1", "inf"]),
                             ("seed", ["0", "1", "7"], ["-1", "1.5", "'x'"]),
                             ("prior", ["[" + ", ".join(["1"] * n) + "]"], ["[0, 1]", "[]", "[-1]"])], clean)
    return f"{kind}({', '.join(args)})"


@st.composite
def mixture_value(draw, domains, clean=True):
    """The mixture channel: an object {domain: number or spec}, mix(...) text, or a mixer."""
    names = [d for d in domains if isinstance(d, str) and d] if isinstance(domains, (list, tuple)) else []
    names = names or ["code", "prose"]
    form = draw(st.integers(0, 9))
    if form < 3 or (form < 5 and not all(n.isidentifier() for n in names)):
        obj = {d: draw(st.sampled_from(MIX_WEIGHTS)) for d in names}
        if all(v in (0, 0.0, "0.0") for v in obj.values()) and clean:
            obj[names[0]] = 1
        if not clean and chance(draw, 1, 3):
            what = draw(st.integers(0, 5))
            if what == 0:
                obj[draw(st.sampled_from(names))] = draw(st.sampled_from(BAD_MIX_WEIGHTS))
            elif what == 1:
                obj[draw(st.sampled_from(["web2", "", "CODE", "1", "λ"]))] = 0.5  # a domain the run lacks
            elif what == 2 and len(obj) > 1:
                del obj[draw(st.sampled_from(sorted(obj)))]  # a missing domain
            elif what == 3:
                obj = {d: 0 for d in obj}  # all zero
            elif what == 4:
                obj[draw(st.sampled_from(names))] = {"code": 1, "prose": {"x": 1}}  # nested
            else:
                obj = draw(st.sampled_from([{}, {"code": []}, [0.5, 0.5], {1: 0.5, 2: 0.5}]))
        return obj
    if form < 5:
        weights = [repr(draw(st.sampled_from([0.5, 1.0, 2.0, 0.25]))) if draw(st.integers(0, 3)) else
                   draw(st.sampled_from(["linear(peak=0.2, final=0.4)", "cosine(peak=1.0)"])) for _ in names]
        parts = [f"{d}={w}" for d, w in zip(names, weights)]
        if not clean and chance(draw, 1, 3):
            bad = draw(st.sampled_from(["-1", "nan", "inf", "True", "None", "odm()", "x"]))
            parts[draw(st.integers(0, len(parts) - 1))] = f"{names[0]}={bad}"
        return f"mix({', '.join(parts)})"
    if not clean and chance(draw, 1, 8):  # not a weight per domain at all
        return draw(st.sampled_from(["cosine(peak=1.0)", 0.5, "sec()", "pace()", "reweight()", "mix()", "odm",
                                     "plateau(odm(), patience=0)", "scale(odm(), by=2)"]))
    return draw(mixer_text(len(names), clean))


@st.composite
def curriculum_value(draw, clean=True):
    """pace(shape=..., start=..., full=...), sec(), dump(); (not clean) bad ones and wrong things."""
    kind = draw(st.sampled_from(["pace", "pace", "pace", "sec", "dump"]))
    if kind == "pace":
        shape = draw(st.sampled_from(["linear", "root", "step", "cyclical"]))
        args = [f"shape={shape!r}"] if _include(draw, 7) else []
        args += _args(draw, [("start", ["0.2", "0.1", "0.5", "1", "1.0"], ["0", "-0.1", "1.5", "nan", "True"]),
                             ("full", ["'50%'", "'20%'", "'100%'", "5", "'0.3dur'"], ["0", "'0%'", "'200%'", "-1",
                                                                                  "'x'", "10**9"])], clean, p=6)
        if shape == "step" and _include(draw, 3):
            args.append(_arg(draw, "stages", ["2", "4", "10"], ["0", "1.5", "10**6"], clean))
        if shape == "cyclical":
            args += _args(draw, [("peak", ["1.0", "0.8"], ["0", "1.5"]), ("factor", ["0.5", "0.9"], ["1", "0"]),
                                 ("every", ["'10%'", "5", "'1ep'"], ["0", "'x'"])], clean)
        text = f"pace({', '.join(args)})"
    elif kind == "sec":
        text = "sec(" + ", ".join(_args(draw, [("alpha", ["0.5", "1", "0.1"], ["0", "1.5", "nan"]),
                                               ("tau", ["1.0", "0.1", "10"], ["0", "-1", "inf"]),
                                               ("floor", ["0.01", "0", "0.2"], ["0.25", "1", "-0.1"])], clean)) + ")"
    else:
        text = "dump(" + ", ".join(_args(draw, [("window", ["300", "1", "5"], ["0", "1.5", "10**6"]),
                                                ("temperature", ["0.1", "1"], ["0", "-1"]),
                                                ("floor", ["0.01", "0.1"], ["0.3", "1"])], clean)) + ")"
    if not clean and chance(draw, 1, 6):
        return draw(st.sampled_from(["odm()", "doremi()", "mix(a=1, b=1)", {"a": 1, "b": 1}, "plateau(pace(), "
                                     "patience=0)", "reweight()", 0.5, "cosine(peak=1.0)", "pace(shape='x')",
                                     "scale(pace(), by=2)"]))
    return text


@st.composite
def sample_weights_value(draw, clean=True):
    """reweight(strategy=..., burn_in=...); (not clean) a bad strategy or another schedule."""
    args = []
    if _include(draw, 7):
        args.append(_arg(draw, "strategy", ["'linupper'", "'quadratic'", "'extremes'"], ["'x'", "''", "None",
                                                                                        "'LINUPPER'"], clean, p_bad=10))
    args += _args(draw, [("burn_in", ["'10%'", "0", "3", "'0.2dur'"], ["'100%'", "-1", "'x'", "10**9"]),
                         ("ramp", ["0", "5", "'10%'"], ["-1", "'x'"]),
                         ("temperature", ["1.0", "0.5", "3"], ["0", "-1", "nan"])], clean)
    if not clean and chance(draw, 1, 6):
        return draw(st.sampled_from(["cosine(peak=1.0)", 1.0, "odm()", "pace()", "sec()", "constant(value=0.5)"]))
    return f"reweight({', '.join(args)})"


@st.composite
def data_channels(draw, domains, clean=True):
    """Some of mixture, curriculum and sample_weights (at least one)."""
    out = {}
    which = draw(st.lists(st.sampled_from(["mixture", "mixture", "curriculum", "curriculum", "sample_weights"]),
                          min_size=1, max_size=3, unique=True))
    for name in which:
        if name == "mixture":
            out[name] = draw(mixture_value(domains, clean))
        elif name == "curriculum":
            out[name] = draw(curriculum_value(clean))
        else:
            out[name] = draw(sample_weights_value(clean))
    return out
