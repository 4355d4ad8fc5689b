"""Every name the README and CONTRIBUTING document imports from where they say it does.

The layout moved modules into layer folders; documented paths stay as re-exports. This test reads
the two documents themselves (``from aeinterp... import ...`` lines and backticked dotted names such as
`aeinterp.executors.make_executor`), so a name documented later is checked too.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
FROM_IMPORT = re.compile(r"^\s*from (aeinterp[\w.]*) import ([\w, ()]+)", re.M)
DOTTED = re.compile(r"`(aeinterp(?:\.\w+)+)")


def _documented() -> list[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for doc in DOCS:
        text = doc.read_text()
        for module, names in FROM_IMPORT.findall(text):
            for name in names.replace("(", " ").replace(")", " ").split(","):
                if name.strip():
                    found.add((module, name.strip().split(" as ")[0]))
        for dotted in DOTTED.findall(text):
            found.add((dotted, ""))
    return sorted(found)


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and read the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize(("where", "name"), _documented(), ids=lambda v: v or "-")
def test_documented_name_imports(where: str, name: str) -> None:
    obj = _resolve(where)
    if name:
        assert hasattr(obj, name), f"`from {where} import {name}` (documented) fails"


def test_the_documents_name_enough_to_check() -> None:
    names = _documented()
    assert len(names) >= 20, names
    assert ("aeinterp", "hookimpl") in names


def test_every_public_name_of_the_package_resolves() -> None:
    import aeinterp

    for name in aeinterp.__all__:
        assert getattr(aeinterp, name) is not None
    for name in dir(aeinterp):
        getattr(aeinterp, name)  # the moved submodules too: aeinterp.runner, aeinterp.datasets, ...


def test_layer_folders_say_what_they_hold() -> None:
    import aeinterp

    for folder in ("toolkit", "io", "models", "recipe", "plugins", "run", "report", "testing"):
        module = importlib.import_module(f"aeinterp.{folder}")
        assert module.__doc__ and len(module.__doc__.split()) >= 20, (
            f"aeinterp/{folder}/__init__.py needs a paragraph saying what the layer holds"
        )
    assert aeinterp.__doc__
