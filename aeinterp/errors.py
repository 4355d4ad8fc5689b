"""The few error classes aeinterp raises.

Every error a user can cause derives from :class:`AeinterpError`; the CLI turns
those into a message and a non-zero exit code, never a traceback. Errors that
come from a plugin say which plugin and which distribution they come from.
"""

from __future__ import annotations

__all__ = [
    "AeinterpError",
    "RecipeError",
    "DataError",
    "ModelError",
    "PluginError",
    "PluginLoadError",
    "RegistrationError",
    "CapabilityError",
    "ExplainerError",
    "MissingDependencyError",
]


class AeinterpError(Exception):
    """Base class of every error aeinterp reports to a user."""


class RecipeError(AeinterpError):
    """A recipe is malformed. ``problems`` holds every problem found, each already located."""

    def __init__(self, problems: list[str] | str, *, source: str | None = None, what: str = "recipe") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"invalid {what} {source}" if source else f"invalid {what}"
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}:\n{body}")


class DataError(AeinterpError):
    """The data cannot be loaded or is unusable (missing file, NaN, wrong shape)."""


class ModelError(AeinterpError):
    """The model cannot be loaded or does not behave like an autoencoder for this data."""


class PluginError(AeinterpError):
    """Something about a plugin; ``plugin`` and ``distribution`` say which one."""

    def __init__(self, message: str, *, plugin: str | None = None, distribution: str | None = None) -> None:
        self.plugin = plugin
        self.distribution = distribution
        super().__init__(message)


class PluginLoadError(PluginError):
    """A plugin's entry point failed to import or to register."""


class RegistrationError(PluginError):
    """A plugin registered something invalid, or a name that is already taken."""


class CapabilityError(PluginError):
    """An explainer was asked for a target, data kind or model it does not support."""


class ExplainerError(PluginError):
    """An explainer raised while explaining; the original exception is ``__cause__``."""


class MissingDependencyError(AeinterpError):
    """An optional dependency is missing; the message names the extra that installs it."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package} is required{what} but is not installed; "
            f"install it with: pip install 'aeinterp[{extra}]'"
        )


def require(module: str, extra: str, purpose: str = ""):
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``.

    Plugins call this inside ``explain`` so that discovering them never imports
    a heavy library.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra, purpose) from exc
