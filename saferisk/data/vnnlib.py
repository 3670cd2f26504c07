"""VNN-LIB (VNN-COMP format) import: the input box and the unsafe output set.

A VNN-LIB file declares inputs X_i and outputs Y_i and asserts what a COUNTEREXAMPLE looks
like: an input inside the input constraints whose output satisfies the output assertion.
This reader handles the VNN-COMP subset: `declare-const`, `assert` with `<=`, `>=`, `<`,
`>` (strict read as non-strict: the closure, as VNN-COMP tools do), `and`, `or`, over
linear terms (`+`, `-`, `*` by constants) of X_i, Y_i and constants. Input constraints must
be per-variable bounds forming one box; output constraints may be any and/or nesting and are
brought to disjunctive normal form:

    unsafe U = OR_j { y : C_j y <= d_j }      ->  VnnlibSpec.unsafe: ({"C": C_j, "d": d_j}, ...)

When the output assertion is exactly "the label j changes" (OR over i != j of Y_i >= Y_j;
Y_i <= Y_j for argmin networks) the spec also carries label j and its decision rule
(argmax / argmin), and, for an L-inf box of one half-width eps around a centre clipped to
[0, 1] (the mnist properties), the centre x0 (lower + eps where lower > 0, else upper - eps)
and eps. This module only reads: the properties a spec states (`LinearOutput`, `Robustness`)
are built by `saferisk.properties.vnnlib`.

(The `vnnlib` PyPI package, MIT, parses the VNN-LIB 2.0 syntax only, which needs
`declare-network`; it rejects every VNN-COMP 2021 file, hence this small reader.)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saferisk.errors import DataError

_TOKEN = re.compile(r"[()]|[^\s()]+")
_VAR = re.compile(r"^([XY])_(\d+)$")
_COMPARISONS = ("<=", ">=", "<", ">")
MAX_DISJUNCTS = 100_000
CENTRE_TOLERANCE = 1e-6


@dataclass
class VnnlibSpec:
    """A parsed VNN-LIB property.

    lower/upper: the input box (n_inputs,). unsafe: the output assertion, its disjuncts
    ({"C": rows, "d": offsets}, ...) as tuples of floats (always set; what a `LinearOutput`
    holds). label: j when the assertion is "label j changes" (else None), decided by
    `decision`. center/eps: the L-inf ball the box comes from, when it is one (else None).
    """

    lower: np.ndarray
    upper: np.ndarray
    label: int | None
    center: np.ndarray | None
    eps: float | None
    n_inputs: int
    n_outputs: int
    unsafe: tuple[dict, ...]
    source: str = ""
    decision: str | None = None  # 'argmax' / 'argmin' for a robustness assertion

    def unsafe_rows(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(C_j (R_j, m), d_j (R_j,))] of the unsafe disjuncts."""
        return [(np.asarray(t["C"], dtype=np.float64), np.asarray(t["d"], dtype=np.float64))
                for t in self.unsafe]

    def output_unsafe(self, y: np.ndarray, tolerance: float = 0.0) -> bool:
        """y (m,) satisfies the output assertion: some disjunct has C_j y <= d_j (+ tolerance)."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        return any(bool(np.all(C @ y <= d + tolerance)) for C, d in self.unsafe_rows())

    def input_inside(self, x: np.ndarray, tolerance: float = 0.0) -> bool:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return bool(np.all(x >= self.lower - tolerance) and np.all(x <= self.upper + tolerance))


# ----------------------------------------------------------------------------- s-expressions

def _parse_sexprs(text: str, source: str) -> list:
    """Top-level s-expressions of `text` (comments after ';' removed) as nested lists."""
    text = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    stack: list[list] = [[]]
    for match in _TOKEN.finditer(text):
        tok = match.group()
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise DataError(f"{source}: unbalanced ')' near offset {match.start()}")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise DataError(f"{source}: unbalanced '(' ({len(stack) - 1} not closed)")
    return stack[0]


class _Reader:
    """Turns asserts into linear atoms: (coefficients {var: c}, constant, op) meaning
    sum c*var + constant  op  0, op in {'<=', '>='}."""

    def __init__(self, source: str):
        self.source = source
        self.inputs: set[int] = set()
        self.outputs: set[int] = set()

    def fail(self, message: str, expr=None) -> DataError:
        where = f" in {_show(expr)}" if expr is not None else ""
        return DataError(f"{self.source}: {message}{where}")

    def linear(self, expr) -> tuple[dict[str, float], float]:
        if isinstance(expr, str):
            if _VAR.match(expr):
                kind, idx = _VAR.match(expr).groups()
                if int(idx) not in (self.inputs if kind == "X" else self.outputs):
                    raise self.fail(f"variable {expr} is used but not declared")
                return {expr: 1.0}, 0.0
            try:
                return {}, float(expr)
            except ValueError:
                raise self.fail(f"unknown symbol {expr!r}") from None
        if not expr or not isinstance(expr[0], str):
            raise self.fail("malformed term", expr)
        op, args = expr[0], [self.linear(a) for a in expr[1:]]
        if op == "+" and args:
            return _combine(args, [1.0] * len(args))
        if op == "-" and len(args) == 1:
            return _combine(args, [-1.0])
        if op == "-" and len(args) >= 2:
            return _combine(args, [1.0] + [-1.0] * (len(args) - 1))
        if op == "*" and args:
            scale, term = 1.0, ({}, 1.0)
            for coef, const in args:
                if coef:
                    if term[0]:
                        raise self.fail("non-linear product", expr)
                    term = (coef, const)
                else:
                    scale *= const
            return {k: v * scale for k, v in term[0].items()}, term[1] * scale
        raise self.fail(f"unsupported term operator {op!r}", expr)

    def dnf(self, expr) -> list[list[tuple]]:
        """Disjunctive normal form: a list (OR) of lists (AND) of atoms."""
        if not isinstance(expr, list) or not expr or not isinstance(expr[0], str):
            raise self.fail("malformed assertion", expr)
        op = expr[0]
        if op == "and":
            out: list[list[tuple]] = [[]]
            for part in expr[1:]:
                out = _product(out, self.dnf(part), self.source)
            return out
        if op == "or":
            out = []
            for part in expr[1:]:
                out.extend(self.dnf(part))
            if not out:
                raise self.fail("empty 'or'", expr)
            return out
        if op in _COMPARISONS:
            if len(expr) < 3:
                raise self.fail(f"'{op}' needs two terms", expr)
            terms = [self.linear(a) for a in expr[1:]]
            atoms = []
            for (lc, lk), (rc, rk) in zip(terms, terms[1:]):  # chained: a <= b <= c
                coef, const = _combine([(lc, lk), (rc, rk)], [1.0, -1.0])
                atoms.append((coef, const, "<=" if op in ("<=", "<") else ">="))
            return [atoms]
        raise self.fail(f"unsupported operator {op!r} (supported: and, or, <=, >=, <, >)", expr)


def _show(expr, limit: int = 80) -> str:
    def text(e):
        return e if isinstance(e, str) else "(" + " ".join(text(a) for a in e) + ")"
    s = text(expr)
    return s if len(s) <= limit else s[:limit] + "..."


def _combine(args, weights) -> tuple[dict[str, float], float]:
    coef: dict[str, float] = {}
    const = 0.0
    for (c, k), w in zip(args, weights):
        for var, v in c.items():
            coef[var] = coef.get(var, 0.0) + w * v
        const += w * k
    return {k: v for k, v in coef.items() if v != 0.0}, const


def _product(left: list[list[tuple]], right: list[list[tuple]], source: str) -> list[list[tuple]]:
    if len(left) * len(right) > MAX_DISJUNCTS:
        raise DataError(f"{source}: the output assertion has more than {MAX_DISJUNCTS} disjuncts in normal form")
    return [a + b for a in left for b in right]


def _kind(coef: dict[str, float]) -> str:
    kinds = {name[0] for name in coef}
    return "const" if not kinds else ("mixed" if len(kinds) > 1 else kinds.pop())


# ----------------------------------------------------------------------------- main entry

def parse_vnnlib(text: str, source: str = "<string>") -> VnnlibSpec:
    """Parse VNN-LIB text (VNN-COMP subset) into a `VnnlibSpec`."""
    reader = _Reader(source)
    commands = _parse_sexprs(text, source)
    asserts = []
    for cmd in commands:
        if not isinstance(cmd, list) or not cmd or not isinstance(cmd[0], str):
            raise DataError(f"{source}: unexpected top-level {_show(cmd)!r}")
        head = cmd[0]
        if head == "declare-const":
            if len(cmd) != 3 or not isinstance(cmd[1], str) or not _VAR.match(cmd[1]):
                raise DataError(f"{source}: declare-const must name X_<i> or Y_<i>, got {_show(cmd)}")
            if cmd[2] != "Real":
                raise DataError(f"{source}: {cmd[1]} has sort {cmd[2]}, only Real is supported")
            kind, idx = _VAR.match(cmd[1]).groups()
            (reader.inputs if kind == "X" else reader.outputs).add(int(idx))
        elif head == "assert":
            if len(cmd) != 2:
                raise DataError(f"{source}: assert takes one formula, got {_show(cmd)}")
            asserts.append(cmd[1])
        elif head in ("set-logic", "set-info", "check-sat", "get-model", "exit"):
            continue
        else:
            raise DataError(f"{source}: unsupported command {head!r}")
    for kind, declared in (("X", reader.inputs), ("Y", reader.outputs)):
        if not declared:
            raise DataError(f"{source}: no {kind}_i variables declared")
        if declared != set(range(len(declared))):
            missing = sorted(set(range(max(declared) + 1)) - declared)
            raise DataError(f"{source}: {kind} variables are not numbered 0..{len(declared) - 1} "
                            f"(missing {kind}_{missing[0]})")
    n, m = len(reader.inputs), len(reader.outputs)
    lower = np.full(n, -np.inf)
    upper = np.full(n, np.inf)
    output_dnf: list[list[tuple]] = [[]]
    for formula in asserts:
        dnf = reader.dnf(formula)
        kinds = {_kind(atom[0]) for conj in dnf for atom in conj}
        if "mixed" in kinds:
            raise DataError(f"{source}: constraints mixing X and Y are not supported: {_show(formula)}")
        if "X" in kinds:
            if len(dnf) != 1 or "Y" in kinds:
                raise DataError(f"{source}: input constraints must be a conjunction of bounds (one box); "
                                f"disjunctive input regions are not supported: {_show(formula)}")
            for coef, const, op in dnf[0]:
                _apply_bound(coef, const, op, lower, upper, source, formula)
            continue
        output_dnf = _product(output_dnf, [[a for a in conj if _kind(a[0]) == "Y"] for conj in dnf
                                           if _consistent_constants(conj)], source)
    missing = [i for i in range(n) if not (np.isfinite(lower[i]) and np.isfinite(upper[i]))]
    if missing:
        raise DataError(f"{source}: input X_{missing[0]} has no finite lower and upper bound")
    empty = np.flatnonzero(lower > upper)
    if empty.size:
        i = int(empty[0])
        raise DataError(f"{source}: the input box is empty at X_{i}: lower {lower[i]} > upper {upper[i]}")
    output_dnf = [conj for conj in output_dnf if conj]
    if not output_dnf:
        raise DataError(f"{source}: no output constraint (the unsafe output set must be stated)")
    unsafe = tuple(_rows_of(conj, m) for conj in output_dnf)
    label, decision = _robustness_label(unsafe, m)
    center = eps = None
    if label is not None:
        center, eps = _linf_ball(lower, upper)
    return VnnlibSpec(lower=lower, upper=upper, label=label, center=center, eps=eps,
                      n_inputs=n, n_outputs=m, unsafe=unsafe, source=source, decision=decision)


def load_vnnlib(path: str | os.PathLike) -> VnnlibSpec:
    """Read and parse a `.vnnlib` file (clear DataError on a missing or malformed file)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"VNN-LIB file not found: {path}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    return parse_vnnlib(text, str(path))


def _consistent_constants(conj: list[tuple]) -> bool:
    """False when a constant-only atom is false (that disjunct is empty)."""
    for coef, const, op in conj:
        if not coef and ((op == "<=" and const > 0) or (op == ">=" and const < 0)):
            return False
    return True


def _apply_bound(coef, const, op, lower, upper, source, formula) -> None:
    if not coef:
        if (op == "<=" and const > 0) or (op == ">=" and const < 0):
            raise DataError(f"{source}: input constraint is always false: {_show(formula)}")
        return
    if len(coef) != 1:
        raise DataError(f"{source}: input constraints must bound one variable each "
                        f"(general linear input constraints are not supported): {_show(formula)}")
    (var, a), = coef.items()
    i = int(var[2:])
    value = -const / a  # a*x + const op 0  ->  x op' -const/a
    is_upper = (op == "<=") == (a > 0)
    if is_upper:
        upper[i] = min(upper[i], value)
    else:
        lower[i] = max(lower[i], value)


def _rows_of(conj: list[tuple], m: int) -> dict:
    """Atoms over Y as C y <= d rows (tuples of floats)."""
    C, d = [], []
    for coef, const, op in conj:
        row = [0.0] * m
        sign = 1.0 if op == "<=" else -1.0
        for var, v in coef.items():
            row[int(var[2:])] += sign * v
        C.append(tuple(float(v) for v in row))
        d.append(float(-sign * const + 0.0))  # + 0.0: no -0.0
    return {"C": tuple(C), "d": tuple(d)}


def _robustness_label(unsafe: tuple[dict, ...], m: int) -> tuple[int | None, str | None]:
    """(j, 'argmax') if U = OR_{i != j} {y_i >= y_j}; (j, 'argmin') if OR_{i != j} {y_i <= y_j}."""
    if len(unsafe) != m - 1 or m < 2:
        return None, None
    pairs = []
    for term in unsafe:
        if len(term["C"]) != 1 or term["d"][0] != 0.0:
            return None, None
        row = np.asarray(term["C"][0])
        plus, minus = np.flatnonzero(row == 1.0), np.flatnonzero(row == -1.0)
        if plus.size != 1 or minus.size != 1 or np.count_nonzero(row) != 2:
            return None, None
        pairs.append((int(plus[0]), int(minus[0])))  # y_plus - y_minus <= 0
    for decision, fixed_at in (("argmax", 0), ("argmin", 1)):
        # argmax: y_j - y_i <= 0 (fixed j in the 'plus' slot); argmin: y_i - y_j <= 0
        fixed = {p[fixed_at] for p in pairs}
        if len(fixed) == 1:
            j = fixed.pop()
            others = sorted(p[1 - fixed_at] for p in pairs)
            if others == [i for i in range(m) if i != j]:
                return j, decision
    return None, None


def _linf_ball(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray | None, float | None]:
    """Centre and eps of a box [clip(x0 - eps, 0, 1), clip(x0 + eps, 0, 1)], if it is one.

    eps = the most common half-width of the features whose box touches neither 0 nor 1 (a
    clipped feature has a narrower box), else the most common width of those at 0;
    x0 = lower + eps where lower > 0, else upper - eps. None when the box is not such a ball."""
    interior = (lower > 0) & (upper < 1)
    widths = ((upper - lower) / 2.0)[interior] if interior.any() else (upper - lower)[lower <= 0]
    if widths.size == 0:
        return None, None
    rounded = np.round(widths, 9)
    values, counts = np.unique(rounded, return_counts=True)
    common = values[np.argmax(counts)]
    eps = float(np.median(widths[rounded == common]))
    if eps <= 0:
        return None, None
    short = float(f"{eps:.6g}")  # files store float32 bounds: 0.05 is written 0.0500000007
    eps = short if abs(short - eps) <= CENTRE_TOLERANCE else eps
    center = np.clip(np.where(lower > 0, lower + eps, upper - eps), lower, upper)
    center = np.where(np.abs(center) <= CENTRE_TOLERANCE, 0.0, center)
    center = np.where(np.abs(center - 1.0) <= CENTRE_TOLERANCE, 1.0, center)
    rebuilt_lower = np.clip(center - eps, 0.0, 1.0)
    rebuilt_upper = np.clip(center + eps, 0.0, 1.0)
    if np.allclose(rebuilt_lower, lower, atol=CENTRE_TOLERANCE) and \
            np.allclose(rebuilt_upper, upper, atol=CENTRE_TOLERANCE):
        return center, eps
    return None, None
