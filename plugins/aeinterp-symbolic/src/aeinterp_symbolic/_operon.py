"""The pyoperon backend: Operon's NSGA-II (accuracy vs length) through its scikit-learn interface.

Two traps of pyoperon 0.6.2 are handled here:

* ``predict`` / ``evaluate_model`` on float32 input return garbage (a constant
  of order 1e-8, R^2 around -1e22), while ``fit`` on float32 works. Every array
  handed to Operon is converted to float64 first.
* model strings name inputs ``X1 .. Xn`` (one-based). Variables are never read
  from those strings: a tree's variable nodes carry the hash of their dataset
  column, and :func:`tree_to_sympy` maps each hash to its column index.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

import numpy as np
import sympy

from aeinterp.errors import require

from .backend_types import Candidate, SearchResult, SearchSettings

__all__ = ["OperonBackend", "tree_to_sympy", "operon_symbols"]

# our operator vocabulary -> Operon's allowed_symbols names
_OPERON_NAMES = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "pow": "pow",
    "square": "square",
    "sqrt": "sqrt",
    "exp": "exp",
    "log": "log",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "tanh": "tanh",
    "sinh": "sinh",
    "cosh": "cosh",
    "atan": "atan",
    "abs": "abs",
}


def operon_symbols(operators: Sequence[str]) -> str:
    """Operon's ``allowed_symbols`` string for our operator names."""
    return ",".join([_OPERON_NAMES[o] for o in operators] + ["constant", "variable"])


def _apply(op, node_type, args: list[sympy.Expr]) -> sympy.Expr:  # noqa: ANN001 - pyoperon module / enum
    """The sympy expression of one Operon function node; ``args[0]`` is its first operand."""
    t = op.NodeType
    a = args[0]
    if node_type == t.Add:
        return sympy.Add(*args)
    if node_type == t.Mul:
        return sympy.Mul(*args)
    if node_type == t.Sub:
        return a - sympy.Add(*args[1:]) if len(args) > 1 else -a
    if node_type == t.Div:
        return a / sympy.Mul(*args[1:]) if len(args) > 1 else 1 / a
    if node_type == t.Pow:
        return a ** args[1]
    if node_type == t.Powabs:
        return sympy.Abs(a) ** args[1]
    if node_type == t.Aq:
        return a / sympy.sqrt(1 + args[1] ** 2)
    unary = {
        t.Square: lambda u: u**2,
        t.Sqrt: sympy.sqrt,
        t.Sqrtabs: lambda u: sympy.sqrt(sympy.Abs(u)),
        t.Exp: sympy.exp,
        t.Log: sympy.log,
        t.Logabs: lambda u: sympy.log(sympy.Abs(u)),
        t.Log1p: lambda u: sympy.log(1 + u),
        t.Sin: sympy.sin,
        t.Cos: sympy.cos,
        t.Tan: sympy.tan,
        t.Tanh: sympy.tanh,
        t.Sinh: sympy.sinh,
        t.Cosh: sympy.cosh,
        t.Asin: sympy.asin,
        t.Acos: sympy.acos,
        t.Atan: sympy.atan,
        t.Abs: sympy.Abs,
    }
    if node_type in unary:
        return unary[node_type](a)
    raise NotImplementedError(f"Operon node {node_type} has no sympy translation")


def tree_to_sympy(tree, columns: dict[int, int], symbols: Sequence[sympy.Symbol]) -> sympy.Expr:  # noqa: ANN001 - operon Tree
    """Translate an Operon tree into sympy, reading variables from the tree's nodes.

    ``columns`` maps a variable node's ``HashValue`` to its input column; column
    ``i`` becomes ``symbols[i]``. Nodes are in postfix order and a function's
    first operand is the child that ends right before it, i.e. the last one
    pushed on the stack (verified against Operon's evaluator in the tests).
    """
    op = require("pyoperon", "symbolic", "the pyoperon symbolic regression backend")
    stack: list[sympy.Expr] = []
    for node in tree.Nodes:
        if node.IsConstant:
            stack.append(sympy.Float(node.Value))
        elif node.IsVariable:
            sym = symbols[columns[node.HashValue]]
            stack.append(sym if node.Value == 1.0 else sympy.Float(node.Value) * sym)
        else:
            args = [stack.pop() for _ in range(node.Arity)]
            stack.append(_apply(op, node.Type, args))
    if len(stack) != 1:
        raise ValueError(f"malformed Operon tree: {len(stack)} expressions left on the stack")
    return stack[0]


class OperonBackend:
    """pyoperon ``SymbolicRegressor`` with objectives (R^2, length): its Pareto front is the candidate list."""

    name = "pyoperon"
    thread_safe = True  # gp.Run releases the GIL; fits in threads run in parallel

    def version(self) -> str:
        try:
            return dist_version("pyoperon")
        except PackageNotFoundError:
            return ""

    def search(
        self, x: np.ndarray, y: np.ndarray, symbols: Sequence[sympy.Symbol], names: Sequence[str], settings: SearchSettings
    ) -> SearchResult:
        require("pyoperon", "symbolic", "the pyoperon symbolic regression backend")
        from pyoperon.sklearn import SymbolicRegressor

        x = np.ascontiguousarray(x, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        reg = SymbolicRegressor(
            allowed_symbols=operon_symbols(settings.operators),
            objectives=["r2", "length"],
            max_length=settings.max_size,
            max_depth=max(10, min(settings.max_size, 32)),
            initialization_max_length=min(10, settings.max_size),
            population_size=settings.population_size,
            generations=settings.generations,
            max_evaluations=2**62,
            optimizer_iterations=settings.optimizer_iterations,
            n_threads=settings.threads,
            max_time=None if settings.time_budget is None else max(1, math.ceil(settings.time_budget)),
            random_state=settings.seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg.fit(x, y)
        columns = {h: i for i, h in enumerate(reg.variables_)}  # variables_ is in dataset column order
        candidates = []
        for entry in reg.pareto_front_:
            tree = entry["tree"]
            try:
                expr = tree_to_sympy(tree, columns, symbols)
            except NotImplementedError:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "model contains no variables" for constants
                engine_text = reg.get_model_string(tree, 6, names=list(names))
            candidates.append(
                Candidate(
                    expr=expr,
                    complexity=int(entry["length"]),
                    loss=float(entry["mean_squared_error"]),
                    predict=_predictor(reg, tree),
                    engine_text=engine_text,
                )
            )
        return SearchResult(candidates, {"generations": int(reg.stats_.get("generations", 0))})


def _predictor(reg, tree):  # noqa: ANN001, ANN202 - operon objects
    def predict(x: np.ndarray) -> np.ndarray:
        # float64 always: pyoperon 0.6.2 returns garbage for float32 input
        return np.asarray(reg.evaluate_model(tree, np.ascontiguousarray(x, dtype=np.float64)), dtype=np.float64)

    return predict
