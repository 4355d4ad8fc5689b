"""The hooks a plugin distribution may implement.

A plugin is a module listed under the ``aeinterp`` entry-point group that
implements some of these hooks with :data:`aeinterp.hookimpl`. Hooks only ever
gain arguments (pluggy lets an implementation take fewer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import ExplainerRegistry

PROJECT = "aeinterp"
ENTRY_POINT_GROUP = "aeinterp"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def aeinterp_register_explainers(registry: ExplainerRegistry) -> None:
    """Register explainer classes: ``registry.add(MyExplainer)`` for each.

    Called once per plugin manager. ``registry.add`` checks the class (an
    :class:`aeinterp.Explainer` subclass with a ``name`` and ``Params``) and
    refuses a name another distribution already registered.
    """
