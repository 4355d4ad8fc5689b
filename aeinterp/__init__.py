"""aeinterp: explain autoencoders, every latent dimension at once.

The public surface: the :class:`Model` protocol and its :class:`TorchAutoencoder`
adapter, :class:`Dataset` and :class:`ArrayDataset`, the :class:`Explainer` base
class with :class:`ExplainerParams` and :class:`Capabilities`, the
:class:`Explanation` result, :class:`Target`, the plugin marker
:data:`hookimpl`, :func:`explain` / :func:`explain_all` to explain your own
model and arrays from Python, :func:`run_explainer` (the path every run takes,
for plugin authors and tests), and the :class:`Runner` for recipes.
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
from .api import Explanations, explain, explain_all
from .step import run_explainer
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
    "Explanations",
    "explain",
    "explain_all",
    "run_explainer",
    "hookimpl",
]


def __getattr__(name: str):  # the runner pulls in reporting; load it on first use
    if name == "Runner":
        from .runner import Runner

        return Runner
    raise AttributeError(f"module 'aeinterp' has no attribute {name!r}")
