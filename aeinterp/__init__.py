"""aeinterp: explain autoencoders, every latent dimension at once.

The public surface: the :class:`Model` protocol and its :class:`TorchAutoencoder`
adapter, :class:`Dataset` and :class:`ArrayDataset`, the :class:`Explainer` base
class with :class:`ExplainerParams` and :class:`Capabilities`, the
:class:`Explanation` result, :class:`Target`, the plugin marker
:data:`hookimpl`, :func:`explain` / :func:`explain_all` to explain your own
model and arrays from Python, :func:`run_explainer` (the path every run takes,
for plugin authors and tests), and the :class:`Runner` for recipes.

Names are imported on first use, so ``import aeinterp`` (and ``aeinterp
--version``) stays cheap: torch loads with the first name that needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .api import Explanations, explain, explain_all
    from .data import ArrayDataset, Dataset, FeatureGroup
    from .errors import (
        AeinterpError, CapabilityError, DataError, ExplainerError, MissingDependencyError, ModelError, PluginError,
        PluginLoadError, RecipeError, RegistrationError,
    )
    from .explainer import Capabilities, Explainer, ExplainerParams, StepRef
    from .explanation import Explanation
    from .hookspecs import hookimpl
    from .model import Model, TorchAutoencoder
    from .runner import Runner
    from .step import run_explainer
    from .targets import Target

_WHERE = {
    "Explanations": "api", "explain": "api", "explain_all": "api",
    "ArrayDataset": "data", "Dataset": "data", "FeatureGroup": "data",
    "AeinterpError": "errors", "CapabilityError": "errors", "DataError": "errors", "ExplainerError": "errors",
    "MissingDependencyError": "errors", "ModelError": "errors", "PluginError": "errors", "PluginLoadError": "errors",
    "RecipeError": "errors", "RegistrationError": "errors",
    "Capabilities": "explainer", "Explainer": "explainer", "ExplainerParams": "explainer", "StepRef": "explainer",
    "Explanation": "explanation", "hookimpl": "hookspecs", "Model": "model", "TorchAutoencoder": "model",
    "Runner": "runner", "run_explainer": "step", "Target": "targets",
}

__all__ = ["__version__", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        if name in _SUBMODULES:
            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module 'aeinterp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value


_SUBMODULES = {"api", "chunks", "data", "datasets", "errors", "explainer", "explanation", "loading", "model", "perturb", "plugins", "recipe", "registry", "results", "runner", "step", "targets", "testing", "training"}


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])
