"""Symbolic regression explainer: ``symbolic_regression``.

Fits a closed-form formula per latent dimension (or per reconstructed feature,
or for the reconstruction error) with pyoperon (default) or PySR, and reports
each formula's fidelity on the held-out split and the exact set of inputs it
uses. :func:`aeinterp_symbolic.law.latent_size_law` fits a symbolic law for
held-out reconstruction error against latent size.
"""

from __future__ import annotations

from aeinterp import hookimpl

__version__ = "0.1.0"


@hookimpl
def aeinterp_register_explainers(registry):  # noqa: ANN001, ANN201 - hook signature
    from .explainer import SymbolicRegression

    registry.add(SymbolicRegression)
