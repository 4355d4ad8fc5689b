"""The search engines behind ``symbolic_regression``: :func:`make_backend` picks one by name.

The interface every engine implements (settings, candidates, results) is in
:mod:`.backend_types`; the engines (:mod:`._operon`, :mod:`._pysr`) import
only that, so this module can import them without a circle.
"""

from __future__ import annotations

from .backend_types import BINARY, OPERATORS, Backend, Candidate, Operator, SearchResult, SearchSettings

__all__ = ["OPERATORS", "BINARY", "Operator", "SearchSettings", "Candidate", "SearchResult", "Backend", "make_backend"]


def make_backend(name: str, *, allow_julia_install: bool = False) -> Backend:
    """Instantiate a backend by name, checking up front that it can run (clear errors otherwise)."""
    if name == "pyoperon":
        from aeinterp.errors import require

        from ._operon import OperonBackend

        require("pyoperon.sklearn", "symbolic", "the pyoperon symbolic regression backend")  # import outside the timed search

        return OperonBackend()
    if name == "pysr":
        from ._pysr import PySRBackend
        from .julia import require_pysr

        require_pysr(allow_julia_install=allow_julia_install)
        return PySRBackend()
    raise ValueError(f"unknown symbolic regression backend {name!r}; use pyoperon or pysr")
