"""Gradient explainers: ``jacobian`` (saliency, input x gradient) and ``integrated_gradients``."""

from __future__ import annotations

from aeinterp import hookimpl

__version__ = "0.1.0"


@hookimpl
def aeinterp_register_explainers(registry):  # noqa: ANN001, ANN201 - hook signature
    from .explainers import IntegratedGradients, Jacobian

    registry.add(Jacobian)
    registry.add(IntegratedGradients)
