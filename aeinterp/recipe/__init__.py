"""Recipes: YAML that is data, never code, validated in two passes with located errors.

:mod:`.yamlsafe` loads YAML safely and keeps each value's line;
:mod:`.schema` is the recipe's shape (pydantic) and the second pass that checks
each step's params against its explainer's ``Params``; :mod:`.locate` turns a
validation error into ``explainers[2].params.background`` with its line and the
nearest valid name. Reads the plugin registry, data kinds and architectures; runs nothing.
"""

from .schema import *  # noqa: F401,F403  (the recipe API: load_recipe, Recipe, ...)
from .schema import __all__  # noqa: F401
