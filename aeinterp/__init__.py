"""aeinterp: explain autoencoders, every latent dimension at once.

The public surface: the :class:`Model` protocol and its :class:`TorchAutoencoder`
adapter, :class:`Dataset` and :class:`ArrayDataset`, the :class:`Explainer` base
class with :class:`ExplainerParams` and :class:`Capabilities`, the
:class:`Explanation` result, :class:`Target`, the plugin marker
:data:`hookimpl`, :func:`explain` to run one explainer from Python, and the
:class:`Runner` for recipes.
"""

from ._version import __version__
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
)
from .explainer import Capabilities, Explainer, ExplainerParams, StepRef
from .explanation import Explanation
from .hookspecs import hookimpl
from .model import Model, TorchAutoencoder
from .step import run_explainer as explain
from .targets import Target

__all__ = [
    "__version__",
    "AeinterpError",
    "ArrayDataset",
    "Capabilities",
    "CapabilityError",
    "DataError",
    "Dataset",
    "Explainer",
    "ExplainerError",
    "ExplainerParams",
    "Explanation",
    "FeatureGroup",
    "MissingDependencyError",
    "Model",
    "ModelError",
    "PluginError",
    "PluginLoadError",
    "RecipeError",
    "RegistrationError",
    "Runner",
    "StepRef",
    "Target",
    "TorchAutoencoder",
    "explain",
    "factory",
    "hookimpl",
]


def __getattr__(name: str):  # the runner pulls in reporting; load it on first use
    if name == "Runner":
        from .runner import Runner

        return Runner
    if name == "factory":  # @aeinterp.factory marks a function that recipes may name as a factory
        from .loading import factory

        return factory
    raise AttributeError(f"module 'aeinterp' has no attribute {name!r}")
