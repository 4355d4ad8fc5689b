"""The explainer registry: name -> class, checked on the way in."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel

from ..errors import RegistrationError
from ..explainer import Capabilities, Explainer
from ..toolkit.chunks import SPLITS, ChunkedExplainer

__all__ = ["ExplainerRegistry", "RegisteredExplainer"]


@dataclass(frozen=True)
class RegisteredExplainer:
    name: str
    cls: type[Explainer]
    distribution: str
    version: str

    @property
    def summary(self) -> str:
        return self.cls.describe()


class ExplainerRegistry:
    """Holds the explainers plugins registered. One per plugin manager, never global."""

    def __init__(self) -> None:
        self._entries: dict[str, RegisteredExplainer] = {}
        self._current: tuple[str, str] = ("<unknown>", "")
        self.conflicts: dict[str, str] = {}
        #: (distribution, message) of every name conflict, in the order found
        self.problems: list[tuple[str, str]] = []
        #: plugins that were found but not loaded (blocked or failed), for error messages
        self.not_loaded: list[str] = []

    def _set_source(self, distribution: str, version: str) -> None:
        """Used by the plugin manager: which distribution the next ``add`` calls come from."""
        self._current = (distribution, version)

    def add(self, cls: type[Explainer]) -> type[Explainer]:
        """Register ``cls``; usable as a decorator. Raises :class:`RegistrationError` for an invalid class.

        A name two distributions claim is not raised: neither explainer keeps it
        (a recipe naming it gets the conflict message), the conflict is recorded
        in :attr:`problems`, and both distributions' other explainers still register.
        """
        dist, version = self._current
        if not (inspect.isclass(cls) and issubclass(cls, Explainer)):
            raise RegistrationError(f"{dist} registered {cls!r}, which is not a subclass of aeinterp.Explainer", distribution=dist)
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise RegistrationError(
                f"{dist} registered {cls.__qualname__} without a valid `name` (an identifier string), got {name!r}",
                distribution=dist,
            )
        params = getattr(cls, "Params", None)
        if not (inspect.isclass(params) and issubclass(params, BaseModel)):
            raise RegistrationError(f"{dist}: {cls.__qualname__}.Params must be a pydantic model", plugin=name, distribution=dist)
        if not isinstance(getattr(cls, "capabilities", None), Capabilities):
            raise RegistrationError(
                f"{dist}: {cls.__qualname__}.capabilities must be a Capabilities instance", plugin=name, distribution=dist
            )
        splits = cls.capabilities.splits
        if cls.capabilities.features not in ("groups", "own"):
            raise RegistrationError(
                f"{dist}: {cls.__qualname__}.capabilities.features must be 'groups' or 'own', got {cls.capabilities.features!r}",
                plugin=name,
                distribution=dist,
            )
        if splits not in SPLITS:
            raise RegistrationError(
                f"{dist}: {cls.__qualname__}.capabilities.splits must be one of {', '.join(SPLITS)}, got {splits!r}",
                plugin=name,
                distribution=dist,
            )
        if splits != "none" and not issubclass(cls, ChunkedExplainer):
            raise RegistrationError(
                f"{dist}: {cls.__qualname__} declares splits={splits!r} but is not an aeinterp.toolkit.chunks.ChunkedExplainer",
                plugin=name,
                distribution=dist,
            )
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise RegistrationError(f"{dist}: {cls.__qualname__} does not implement {missing}", plugin=name, distribution=dist)
        if name in self.conflicts:
            self.problems.append((dist, self.conflicts[name]))
            return cls
        if name in self._entries:
            other = self._entries[name]
            if other.cls is cls:
                return cls
            del self._entries[name]  # neither wins: a recipe naming it gets this error
            self.conflicts[name] = (
                f"explainer name {name!r} is claimed by two plugins: {other.distribution} {other.version} "
                f"({other.cls.__module__}.{other.cls.__qualname__}) and {dist} {version} "
                f"({cls.__module__}.{cls.__qualname__}); uninstall one or block it with AEINTERP_BLOCK_PLUGINS"
            )
            self.problems.append((dist, self.conflicts[name]))
            return cls
        self._entries[name] = RegisteredExplainer(name, cls, dist, version)
        return cls

    def __getitem__(self, name: str) -> RegisteredExplainer:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def get(self, name: str) -> RegisteredExplainer | None:
        return self._entries.get(name)

    def unknown_message(self, name: str) -> str:
        if name in self.conflicts:
            return self.conflicts[name]
        lowered = {n.lower(): n for n in self._entries}  # deepSHAP -> deepshap: case is never the difference
        close = (
            [lowered[name.lower()]]
            if name.lower() in lowered
            else [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=1)]
        )
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(self._entries)) or "none installed"
        msg = f"unknown explainer {name!r}{hint} (installed: {known})"
        if not self._entries:
            msg += ". The built-ins ship with aeinterp: `pip install aeinterp` (in a clone: `pip install .`); check AEINTERP_PLUGINS / AEINTERP_BLOCK_PLUGINS; see `aeinterp plugins`"
        if self.not_loaded:
            shown = "; ".join(self.not_loaded[:2]) + (f"; and {len(self.not_loaded) - 2} more" if len(self.not_loaded) > 2 else "")
            msg += f"; not loaded: {shown}"
        return msg

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[RegisteredExplainer]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)
