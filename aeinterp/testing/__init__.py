"""Test kit for explainer authors: an opt-in pytest plugin.

Enable it with ``-p aeinterp.testing`` (or ``pytest_plugins = ["aeinterp.testing"]``).
It provides

* :func:`planted_autoencoder` — a hand-built encoder with known dependencies;
* :class:`ExplainerConformance` — the base class every explainer's tests subclass;
* fixtures ``planted`` (the default planted model) and ``run_recipe``
  (write a recipe dict to a temporary folder, run it, return the results).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conformance import ExplainerConformance, FailingModel, model_state
from .planted import Planted, PlantedAutoencoder, planted_autoencoder

__all__ = ["ExplainerConformance", "FailingModel", "model_state", "Planted", "PlantedAutoencoder", "planted_autoencoder"]


@pytest.fixture
def planted() -> Planted:
    """The default planted autoencoder: z0 <- x0,x1; z1 <- x2,x3,x4; z2 <- x5 (10 features)."""
    return planted_autoencoder()


@pytest.fixture
def run_recipe(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``run_recipe(recipe_dict, plugins=None, files=None) -> results.json as a dict``.

    Writes the recipe (and ``files``: name -> bytes/str) into a temporary
    folder and runs it with exactly ``plugins`` (plugin modules), or with the
    installed entry points when ``plugins`` is None.
    """
    import json

    import yaml

    from ..runner import Runner

    def run(recipe: dict[str, Any], plugins: list[Any] | None = None, files: dict[str, Any] | None = None) -> dict[str, Any]:
        for name, content in (files or {}).items():
            target = tmp_path / name
            target.write_bytes(content if isinstance(content, bytes) else str(content).encode())
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        runner = Runner(autoload=plugins is None, plugins=plugins or ())
        outcome = runner.run_file(path)
        return json.loads((outcome.out_dir / "results.json").read_text())

    return run
