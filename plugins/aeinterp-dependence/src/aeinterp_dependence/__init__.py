"""Statistical dependence explainers: ``mutual_information`` (KSG or normalised HSIC)."""

from __future__ import annotations

from aeinterp import hookimpl

__version__ = "0.1.0"


@hookimpl
def aeinterp_register_explainers(registry):  # noqa: ANN001, ANN201 - hook signature
    from .explainers import MutualInformation

    registry.add(MutualInformation)
