"""Symbolic regression explainer: ``symbolic_regression``.

Fits a closed-form formula per latent dimension (or per reconstructed feature,
or for the reconstruction error) with pyoperon (default) or PySR, and reports
each formula's fidelity on the held-out split and the exact set of inputs it
uses. ``latent_size_law`` (and the function
:func:`aeinterp_symbolic.law.latent_size_law`) trains the built-in autoencoder
at several latent sizes and fits a symbolic law for held-out reconstruction
error against latent size.
"""

from __future__ import annotations

from aeinterp import hookimpl

__version__ = "0.1.0"


@hookimpl
def aeinterp_register_explainers(registry):  # noqa: ANN001, ANN201 - hook signature
    from .explainer import SymbolicRegression
    from .law_explainer import LatentSizeLawExplainer

    registry.add(SymbolicRegression)
    registry.add(LatentSizeLawExplainer)
