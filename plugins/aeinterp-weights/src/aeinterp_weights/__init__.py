"""Weight-based importance: ``weight_importance`` (Garson's and Olden's methods)."""

from __future__ import annotations

from aeinterp import hookimpl

__version__ = "0.1.0"


@hookimpl
def aeinterp_register_explainers(registry):  # noqa: ANN001, ANN201 - hook signature
    from .explainer import WeightImportance

    registry.add(WeightImportance)
