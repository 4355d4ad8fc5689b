"""Finding and loading plugins: one plugin manager per run, never at import time.

Plugins are found through the ``aeinterp`` entry-point group. Switches, as
arguments or environment variables:

``AEINTERP_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry points (only plugins passed explicitly);
``AEINTERP_PLUGINS=a,b``
    load only these (entry-point or distribution names);
``AEINTERP_BLOCK_PLUGINS=a,b``
    load all but these;
``AEINTERP_TRACE_PLUGINS=1``
    print every hook call to stderr.

A plugin that fails to import or to register becomes a warning that names its
distribution, version and the error; the other plugins keep working.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from ..errors import PluginLoadError, RegistrationError
from . import hookspecs
from .registry import ExplainerRegistry

__all__ = ["PluginHost", "PluginInfo", "PluginWarning"]


class PluginWarning(UserWarning):
    """A plugin could not be loaded; the others still work."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    status: str  # loaded | failed | blocked
    error: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version, "status": self.status, "error": self.error}


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name, "").strip()
    return [s.strip() for s in raw.split(",") if s.strip()] or None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class PluginHost:
    """A plugin manager with its explainer registry.

    Parameters
    ----------
    autoload:
        Load the ``aeinterp`` entry points (default: yes, unless
        ``AEINTERP_DISABLE_PLUGIN_AUTOLOAD`` is set).
    allow, block:
        Entry-point or distribution names to load exclusively / to skip.
    plugins:
        Extra plugin objects (modules or instances with hook implementations)
        to register, e.g. ``[aeinterp_perturbation]`` in a test.
    trace:
        Print hook calls to stderr.
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        allow: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        plugins: Iterable[Any] = (),
        trace: bool | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = ExplainerRegistry()
        self.infos: list[PluginInfo] = []
        self._sources: dict[str, tuple[str, str]] = {}
        if trace if trace is not None else _env_flag("AEINTERP_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        autoload = (not _env_flag("AEINTERP_DISABLE_PLUGIN_AUTOLOAD")) if autoload is None else autoload
        allow_set = set(allow) if allow is not None else set(_env_list("AEINTERP_PLUGINS") or [])
        block_set = set(block) if block is not None else set(_env_list("AEINTERP_BLOCK_PLUGINS") or [])
        if autoload:
            for ep in sorted(entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name):
                self._load_entry_point(ep, allow_set, block_set)
        for plugin in plugins:
            self.register(plugin)
        self._register_all()

    # --- loading -------------------------------------------------------------------
    def _load_entry_point(self, ep: EntryPoint, allow: set[str], block: set[str]) -> None:
        dist = ep.dist.name if ep.dist is not None else ep.value.split(":")[0]
        version = ep.dist.version if ep.dist is not None else ""
        names = {ep.name, dist}
        if (allow and not names & allow) or names & block:
            self.infos.append(PluginInfo(ep.name, dist, version, "blocked"))
            why = "not in the allow list" if allow and not names & allow else "blocked"
            self.registry.not_loaded.append(f"{ep.name} from {dist} {version} ({why})")
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not break the others
            self._fail(ep.name, dist, version, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
            return
        self.register(plugin, name=ep.name, distribution=dist, version=version)

    def register(self, plugin: Any, *, name: str | None = None, distribution: str | None = None, version: str = "") -> None:
        """Register a plugin object (module or instance) with this host."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        dist = distribution or name
        if not version:
            version = str(getattr(plugin, "__version__", ""))
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(name, dist, version, f"failed to register: {type(exc).__name__}: {exc}")
            return
        self._sources[name] = (dist, version)

    def _register_all(self) -> None:
        for name, (dist, version) in self._sources.items():
            plugin = self.pm.get_plugin(name)
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            caller = self.pm.subset_hook_caller("aeinterp_register_explainers", remove_plugins=others)
            self.registry._set_source(dist, version)
            seen = len(self.registry.problems)
            try:
                caller(registry=self.registry)
            except RegistrationError as exc:
                self._fail(name, dist, version, str(exc))
                continue
            except Exception as exc:
                self._fail(name, dist, version, f"failed while registering: {type(exc).__name__}: {exc}")
                continue
            conflicts = [m for _, m in self.registry.problems[seen:]]
            for message in conflicts:  # its other explainers are registered; only the contested name is lost
                warnings.warn(f"plugin {name!r} from {dist} {version}: {message}", PluginWarning, stacklevel=3)
            self.infos.append(PluginInfo(name, dist, version, "loaded", "; ".join(conflicts)))

    def _fail(self, name: str, dist: str, version: str, message: str) -> None:
        info = PluginInfo(name, dist, version, "failed", message)
        self.infos.append(info)
        self.registry.not_loaded.append(f"{name} from {dist} {version} (failed: {message})")
        warnings.warn(
            PluginLoadError(f"plugin {name!r} from {dist} {version}: {message}", plugin=name, distribution=dist).args[0],
            PluginWarning,
            stacklevel=3,
        )

    @property
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.status == "failed"]
