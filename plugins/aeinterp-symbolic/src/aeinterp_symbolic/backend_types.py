"""The one small interface of the search engines behind ``symbolic_regression``: its types.

A backend takes inputs ``x`` (float64, one column per symbol), a target ``y``
and :class:`SearchSettings`, and returns its Pareto front as
:class:`Candidate` formulas: a sympy expression over the given symbols, the
backend's own complexity, its training loss, and a function that evaluates
the formula exactly as the engine does. Nothing else in the plugin knows
which engine ran.

Operators use one vocabulary for both engines (:data:`OPERATORS`); the
settings that mean the same thing (size, generations/iterations, population,
time budget, threads, seed, constant-optimiser iterations) are shared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:  # sympy is imported only when a search runs
    import sympy

__all__ = ["OPERATORS", "BINARY", "Operator", "SearchSettings", "Candidate", "SearchResult", "Backend"]

Operator = Literal[
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "square",
    "sqrt",
    "exp",
    "log",
    "sin",
    "cos",
    "tan",
    "tanh",
    "sinh",
    "cosh",
    "atan",
    "abs",
]
OPERATORS: tuple[str, ...] = Operator.__args__  # type: ignore[attr-defined]
BINARY = frozenset({"add", "sub", "mul", "div", "pow"})


@dataclass(frozen=True)
class SearchSettings:
    """What every backend understands, with the same meaning."""

    operators: tuple[str, ...]
    max_size: int
    generations: int
    population_size: int
    time_budget: float | None
    threads: int
    seed: int
    optimizer_iterations: int


@dataclass
class Candidate:
    """One formula of a backend's Pareto front."""

    expr: "sympy.Expr"
    complexity: int
    loss: float
    predict: Callable[[np.ndarray], np.ndarray]
    engine_text: str = ""


@dataclass
class SearchResult:
    candidates: list[Candidate]
    info: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str
    #: whether several fits may run at once in threads of this process
    thread_safe: bool

    def version(self) -> str: ...

    def search(
        self, x: np.ndarray, y: np.ndarray, symbols: Sequence["sympy.Symbol"], names: Sequence[str], settings: SearchSettings
    ) -> SearchResult: ...
