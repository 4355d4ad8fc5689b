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
    "StepTimeout",
    "MissingDependencyError",
    "ResourceError",
]


class AeinterpError(Exception):
    """Base class of every error aeinterp reports to a user."""


MAX_PROBLEMS = 50  # problems shown in one message; the rest are counted
MAX_PROBLEM_CHARS = 400  # characters of one problem (values quoted from a recipe can be huge)


def clip(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out (control characters shown escaped)."""
    from .text import terminal_safe

    text = terminal_safe(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


class RecipeError(AeinterpError):
    """A recipe is malformed. ``problems`` holds every problem found, each already located.

    The message is bounded: at most :data:`MAX_PROBLEMS` problems of at most
    :data:`MAX_PROBLEM_CHARS` characters each.
    """

    def __init__(self, problems: list[str] | str, *, source: str | None = None, what: str = "recipe") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"invalid {what} {clip(source, 200)}" if source else f"invalid {what}"
        shown = [f"  - {clip(p)}" for p in self.problems[:MAX_PROBLEMS]]
        if len(self.problems) > MAX_PROBLEMS:
            shown.append(f"  ... and {len(self.problems) - MAX_PROBLEMS} more problems")
        super().__init__(f"{head}:\n" + "\n".join(shown))


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
    """An explainer raised while explaining, or returned something unusable; the original exception is ``__cause__``."""


class StepTimeout(ExplainerError):
    """A step ran past its ``timeout`` and was abandoned."""


class ResourceError(AeinterpError):
    """Not enough disk space (or memory) for what a step must write; the message gives the size and the room left."""


class MissingDependencyError(AeinterpError):
    """An optional dependency is missing; the message names the extra that installs it."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        self.purpose = purpose
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"{package} is required{what} but is not installed; install it with: pip install 'aeinterp[{extra}]'")

    def __reduce__(self):  # noqa: ANN204 - picklable, so it can come back from a Ray worker
        return (type(self), (self.package, self.extra, self.purpose))


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
