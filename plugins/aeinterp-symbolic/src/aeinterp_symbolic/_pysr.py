"""The PySR backend (optional; needs a Julia runtime, see :mod:`aeinterp_symbolic.julia`).

``pysr`` is imported inside :meth:`PySRBackend.search` only, after
:func:`aeinterp_symbolic.julia.require_pysr` has checked that a Julia
executable exists, so asking for this backend on a machine without Julia fails
fast with instructions instead of a download attempt. Variables are passed to
PySR as ``v0 .. v{n-1}`` and mapped back from the sympy tree of each equation
by exact symbol name.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

import numpy as np
import sympy

from aeinterp.errors import require

from .backend_types import BINARY, Candidate, SearchResult, SearchSettings

__all__ = ["PySRBackend", "pysr_operators"]

_PYSR_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "^"}


def pysr_operators(operators: Sequence[str]) -> tuple[list[str], list[str]]:
    """PySR's ``(binary_operators, unary_operators)`` for our operator names."""
    binary = [_PYSR_BINARY[o] for o in operators if o in BINARY]
    unary = [o for o in operators if o not in BINARY]
    return binary, unary


class PySRBackend:
    """``pysr.PySRRegressor``; its hall of fame (best formula per complexity) is the candidate list."""

    name = "pysr"
    thread_safe = False  # one Julia runtime per process: fits run one after another, each multithreaded

    def version(self) -> str:
        try:
            return dist_version("pysr")
        except PackageNotFoundError:
            return ""

    def search(
        self, x: np.ndarray, y: np.ndarray, symbols: Sequence[sympy.Symbol], names: Sequence[str], settings: SearchSettings
    ) -> SearchResult:
        pysr = require("pysr", "pysr", "the pysr symbolic regression backend")
        binary, unary = pysr_operators(settings.operators)
        var_names = [f"v{i}" for i in range(x.shape[1])]
        deterministic = settings.threads <= 1
        with tempfile.TemporaryDirectory(prefix="aeinterp-pysr-") as tmp:
            model = pysr.PySRRegressor(
                binary_operators=binary or ["+"],
                unary_operators=unary,
                maxsize=max(7, settings.max_size),
                niterations=settings.generations,
                population_size=settings.population_size,
                timeout_in_seconds=settings.time_budget,
                optimizer_iterations=settings.optimizer_iterations,
                parallelism="serial" if deterministic else "multithreading",
                procs=None if deterministic else settings.threads,
                deterministic=deterministic,
                random_state=settings.seed,
                model_selection="best",
                output_directory=tmp,
                verbosity=0,
                progress=False,
            )
            model.fit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), variable_names=var_names)
            table = model.equations_
        by_name = {n: symbols[i] for i, n in enumerate(var_names)}
        candidates = []
        for index, row in enumerate(table.itertuples(index=False)):
            raw = sympy.sympify(row.sympy_format)
            expr = raw.xreplace({s: by_name[s.name] for s in raw.free_symbols if s.name in by_name})
            candidates.append(
                Candidate(
                    expr=expr,
                    complexity=int(row.complexity),
                    loss=float(row.loss),
                    predict=_predictor(model, index),
                    engine_text=str(row.equation),
                )
            )
        return SearchResult(candidates, {"iterations": settings.generations})


def _predictor(model, index: int):  # noqa: ANN001, ANN202 - PySRRegressor
    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(x, dtype=np.float64), index=index), dtype=np.float64)

    return predict
