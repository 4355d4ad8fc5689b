"""Formulas as sympy expressions: evaluate, simplify, render, and read their variables.

Every backend hands back candidate formulas as sympy expressions over real
symbols ``x0 .. x{n-1}`` (one per input column of the explainer, never the
backend's own ``X1``-style names). From then on everything here works on the
expression tree: which inputs a formula uses is the set of symbols in that
tree (so ``x1`` is never confused with ``x10``), derivatives for sensitivity
come from sympy, and names are only attached when rendering.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import sympy
from sympy.printing.str import StrPrinter

__all__ = [
    "make_symbols",
    "compile_expr",
    "chop",
    "simplify",
    "prune_terms",
    "round_floats",
    "render_text",
    "render_latex",
    "r2_rmse",
    "sensitivity",
]

Evaluator = Callable[[np.ndarray], np.ndarray]


def make_symbols(n: int) -> list[sympy.Symbol]:
    """``n`` real symbols ``x0 .. x{n-1}``; the i-th stands for input column i."""
    return [sympy.Symbol(f"x{i}", real=True) for i in range(n)]


def compile_expr(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> Evaluator:
    """A numpy function of an ``(N, len(symbols))`` float64 array, column i bound to ``symbols[i]``."""
    fn = sympy.lambdify(list(symbols), expr, modules="numpy")

    def evaluate(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = fn(*(x[:, i] for i in range(x.shape[1])))
        return np.broadcast_to(np.asarray(out, dtype=np.float64), (x.shape[0],)).copy()

    return evaluate


def chop(expr: sympy.Expr, tol: float = 1e-8) -> sympy.Expr:
    """Numbers smaller than ``tol`` in absolute value set to 0 (optimiser noise such as ``+ 1.3e-9``)."""
    reps = {f: sympy.Integer(0) for f in expr.atoms(sympy.Float) if abs(float(f)) < tol}
    return expr.xreplace(reps) if reps else expr


def simplify(expr: sympy.Expr, max_ops: int = 80) -> sympy.Expr:
    """``sympy.simplify`` for expressions up to ``max_ops`` operations (larger ones stay as they are).

    Expressions with functions (``tanh``, ``exp``, ``sin`` ...) only get their
    common factors pulled out (``factor_terms``): sympy's trigonometric and
    hyperbolic rewriting ran for many minutes, without end, on 45- and 67-operation
    formulas with nested ``tanh`` that the search returns, and saves at most a
    node or two on such float-coefficient formulas.
    """
    if sympy.count_ops(expr) > max_ops:
        return expr
    try:
        out = sympy.factor_terms(expr) if expr.atoms(sympy.Function) else sympy.simplify(expr)
    except (TypeError, ValueError, RecursionError, NotImplementedError):
        return expr
    # simplify may trade a short expression for a longer "simpler" one; keep the shorter
    return out if sympy.count_ops(out) <= sympy.count_ops(expr) else expr


def prune_terms(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], x: np.ndarray, scale: float, rtol: float = 1e-4) -> sympy.Expr:
    """Drop additive terms whose root-mean-square on ``x`` is below ``rtol * scale``.

    ``scale`` is the target's standard deviation, so what goes is a term that
    moves the formula by less than ``rtol`` of the target's spread (fidelity is
    measured after pruning, so its cost is reported, not hidden).
    """
    if not isinstance(expr, sympy.Add) or scale <= 0:
        return expr
    keep = []
    for term in expr.args:
        values = compile_expr(term, symbols)(x)
        rms = float(np.sqrt(np.mean(values**2))) if np.all(np.isfinite(values)) else math.inf
        if rms >= rtol * scale:
            keep.append(term)
    if not keep or len(keep) == len(expr.args):
        return expr
    return sympy.Add(*keep)


def round_floats(expr: sympy.Expr, digits: int) -> sympy.Expr:
    """Numbers rounded to ``digits`` significant digits; those that become whole become Integers."""
    reps: dict[sympy.Basic, sympy.Basic] = {}
    for f in expr.atoms(sympy.Float):
        r = float(f"{float(f):.{digits}g}")
        reps[f] = sympy.Integer(int(r)) if r.is_integer() and abs(r) < 10**digits else sympy.Float(r, digits)
    return expr.xreplace(reps)


_PLAIN = re.compile(r"^[A-Za-z_][\w.\[\],@]*$")


def _text_name(name: str) -> str:
    return name if _PLAIN.match(name) else f"`{name}`"


class _NamedPrinter(StrPrinter):
    """sympy's text printer with symbols shown under other names (nothing is rebuilt or re-evaluated)."""

    def __init__(self, names: Mapping[sympy.Symbol, str]) -> None:
        super().__init__()
        self._names = names

    def _print_Symbol(self, expr: sympy.Symbol) -> str:  # noqa: N802 - sympy's printer protocol
        return self._names.get(expr, expr.name)


def render_text(expr: sympy.Expr, names: Mapping[sympy.Symbol, str]) -> str:
    """The formula as text, each symbol shown as its feature name (names with spaces in backticks).

    Printed, not substituted: rebuilding a nested-tanh formula with plain
    (not real) symbols made sympy re-derive ``tanh(...).is_real`` through
    polynomial gcds, which never returned.
    """
    return _NamedPrinter({s: _text_name(names[s]) for s in expr.free_symbols if s in names}).doprint(expr)


_LATEX_ESCAPES = {
    "\\": r"\backslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "^": r"\^{}",
    "#": r"\#",
    "$": r"\$",
    "%": r"\%",
    "&": r"\&",
    "~": r"\sim{}",
    " ": r"\ ",
}


def latex_name(name: str) -> str:
    """A LaTeX rendering of a feature name: ``x3`` -> ``x_{3}``, anything longer in ``\\mathrm{}``."""
    m = re.fullmatch(r"([A-Za-z])(\d*)", name)
    if m:
        return m.group(1) + (f"_{{{m.group(2)}}}" if m.group(2) else "")
    return r"\mathrm{" + "".join(_LATEX_ESCAPES.get(c, c) for c in name) + "}"


def render_latex(expr: sympy.Expr, names: Mapping[sympy.Symbol, str]) -> str:
    """The formula as LaTeX, each symbol shown as its feature name."""
    return sympy.latex(expr, symbol_names={s: latex_name(names[s]) for s in expr.free_symbols if s in names})


def r2_rmse(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Coefficient of determination and root mean squared error (``-inf``/``inf`` for non-finite predictions).

    For a constant target the R^2 is 1 when the prediction matches it to 1e-12
    and 0 otherwise.
    """
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if not np.all(np.isfinite(pred)):
        return -math.inf, math.inf
    sse = float(np.sum((y - pred) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    rmse = math.sqrt(sse / max(1, y.size))
    if sst <= 1e-24:
        return (1.0 if rmse <= 1e-12 * max(1.0, float(np.abs(y).max(initial=0.0))) else 0.0), rmse
    return 1.0 - sse / sst, rmse


def sensitivity(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], x: np.ndarray) -> np.ndarray:
    """Mean ``|df/dx_i|`` over the rows of ``x`` for each of ``symbols`` (0 for symbols ``expr`` lacks)."""
    out = np.zeros(len(symbols))
    present = expr.free_symbols
    for i, s in enumerate(symbols):
        if s not in present:
            continue
        values = compile_expr(sympy.diff(expr, s), symbols)(x)
        finite = np.isfinite(values)
        out[i] = float(np.mean(np.abs(values[finite]))) if finite.any() else 0.0
    return out
