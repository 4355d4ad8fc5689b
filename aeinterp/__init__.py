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
    from .api import Explanations, code_page, explain, explain_all, find_explainer, latent_page, load
    from .data import ArrayDataset, Dataset, FeatureGroup
    from .errors import (
        AeinterpError,
        CapabilityError,
        DataError,
        ExplainerError,
        MissingDependencyError,
        ModelError,
        PluginError,
        PluginLoadError,
        RecipeError,
        RegistrationError,
        StepTimeout,
    )
    from .explainer import Capabilities, Explainer, ExplainerParams, StepRef
    from .explanation import Explanation
    from .model import Model, TorchAutoencoder
    from .models.loading import factory
    from .plugins.hookspecs import hookimpl
    from .run.dispatch import run_explainer
    from .runner import Runner
    from .targets import Target

_WHERE = {
    "Explanations": "api",
    "explain": "api",
    "explain_all": "api",
    "find_explainer": "api",
    "latent_page": "api",
    "code_page": "api",
    "load": "api",
    "ArrayDataset": "data",
    "Dataset": "data",
    "FeatureGroup": "data",
    "AeinterpError": "errors",
    "CapabilityError": "errors",
    "DataError": "errors",
    "ExplainerError": "errors",
    "MissingDependencyError": "errors",
    "ModelError": "errors",
    "PluginError": "errors",
    "PluginLoadError": "errors",
    "RecipeError": "errors",
    "RegistrationError": "errors",
    "Capabilities": "explainer",
    "Explainer": "explainer",
    "ExplainerParams": "explainer",
    "StepRef": "explainer",
    "Explanation": "explanation",
    "hookimpl": "plugins.hookspecs",
    "Model": "model",
    "TorchAutoencoder": "model",
    "Runner": "runner",
    "run_explainer": "run.dispatch",
    "Target": "targets",
    "factory": "models.loading",
    "StepTimeout": "errors",
}

__all__ = ["__version__", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        if name in _SUBMODULES:
            return importlib.import_module(f".{_SUBMODULES[name]}", __name__)
        raise AttributeError(f"module 'aeinterp' has no attribute {name!r}")
    if name == "Explanation":  # with its views (exp.plot, notebook display), which the report layer attaches
        importlib.import_module(".report.views", __name__)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value


# ``aeinterp.<name>`` as an attribute: the modules this package always offered, where they live now.
# The layers' own folders (toolkit, io, models, recipe, plugins, run, report) import as usual.
_SUBMODULES = {
    "api": "api",
    "data": "data",
    "errors": "errors",
    "explainer": "explainer",
    "explanation": "explanation",
    "model": "model",
    "targets": "targets",
    "testing": "testing",
    "progress": "progress",
    "device": "device",
    "chunks": "toolkit.chunks",
    "perturb": "toolkit.perturb",
    "streaming": "toolkit.streaming",
    "datasets": "io.datasets",
    "loading": "models.loading",
    "training": "models.training",
    "plugins": "plugins",
    "registry": "plugins.registry",
    "recipe": "recipe",
    "results": "run.results",
    "runner": "runner",
    "step": "run.step",
    "executors": "run.executors",
    "toolkit": "toolkit",
    "io": "io",
    "models": "models",
    "run": "run",
    "report": "report",
}


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])
