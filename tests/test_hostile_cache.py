"""A cache that cannot be used against its user (issue 27, items 1, 8 and 9).

Security tests: an edited cache entry (a shared cache, one shipped in a recipe
folder) never makes a run read a file outside the entry or write one outside
its output folder. Exactness tests: the key covers the code a model runs, and
a cached step keeps its per-sample array.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation, hookimpl
from aeinterp.explainer import ALL_TARGETS
from aeinterp.model import evaluate
from aeinterp.run.cache import Cache, file_hash, module_fingerprint
from aeinterp.run.results import load_results
from aeinterp.runner import Runner
from aeinterp.targets import Target, evaluate_target, target_names_for


class Drawing(Explainer):
    """Mean |target| x mean |feature|, with a figure of its own; counts its drawings."""

    name = "drawing"
    drawn = 0
    capabilities = Capabilities(targets=ALL_TARGETS)

    class Params(ExplainerParams):
        scale: float = 1.0

    def explain(self, model, data, *, target, rng):  # noqa: ANN001
        target = Target(target)
        x = self.take_rows(data, "explain", None, rng)
        y = evaluate(lambda b: evaluate_target(model, target, b), x, model=model).double().numpy()
        imp = self.params.scale * np.outer(np.abs(y).mean(axis=0), np.abs(x).mean(axis=0))
        return Explanation(
            importance=imp, feature_names=data.group_names, target_names=target_names_for(model, data, target), target=target.value
        )

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        from matplotlib.figure import Figure

        cls.drawn += 1
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().plot(explanation.importance.ravel())
        return {"own": fig}


class Plugin:
    __version__ = "1.0"

    @hookimpl
    def aeinterp_register_explainers(self, registry) -> None:  # noqa: ANN001
        registry.add(Drawing)


def _data(folder: Path, n: int = 60) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    (folder / "d.csv").write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in x) + "\n")


def _recipe(folder: Path, **over: Any) -> Path:
    recipe: dict[str, Any] = {
        "seed": 1,
        "device": "cpu",
        "cache": "cache",
        "data": {"path": "d.csv"},
        "model": {"builtin": "mlp", "latent_dim": 2, "options": {"hidden": [8]}, "train": {"epochs": 3}},
        "explainers": [{"name": "drawing"}],
        "report": {"terminal": False, "plots": True, "html": True},
        "output": "run/out",
    }
    recipe.update(over)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(path: Path) -> Any:
    Drawing.drawn = 0
    outcome = Runner(plugins=[Plugin()], quiet=True).run_file(path)
    assert outcome.ok, outcome.failures
    return outcome


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    _data(tmp_path)
    return tmp_path


def _manifests(folder: Path) -> list[Path]:
    return sorted((folder / "cache" / "figures").glob("*/*/figures.json"))


def test_edited_figure_manifest_reads_nothing_outside_and_writes_nothing_outside(folder: Path) -> None:
    """The issue's exploit: an absolute path as a file, ``..`` in a figure name."""
    path = _recipe(folder)
    _run(path)
    assert Drawing.drawn == 1
    secret = folder / "secret.txt"
    secret.write_text("SECRET-CONTENT")
    for manifest in _manifests(folder):
        doc = json.loads(manifest.read_text())
        doc["files"] = {"": str(secret), "x/../../../../ESCAPED": "0.png"}
        manifest.write_text(json.dumps(doc))
    outcome = _run(path)
    assert Drawing.drawn == 1  # the entry was refused, the figures drawn again
    out = outcome.out_dir
    assert b"SECRET-CONTENT" not in (out / "drawing.png").read_bytes()
    assert "SECRET-CONTENT" not in (out / "report.html").read_text()
    assert not list(folder.rglob("ESCAPED*")) and not list(folder.parent.glob("ESCAPED*"))


@pytest.mark.parametrize("attack", ["symlink", "rehashed-symlink", "changed-bytes", "extra-name", "dotdot-name", "absolute-file"])
def test_each_kind_of_edited_figure_entry_is_a_miss(folder: Path, attack: str) -> None:
    path = _recipe(folder)
    first = {p.name: p.read_bytes() for p in _run(path).out_dir.glob("drawing*.png")}
    secret = folder / "secret.png"
    secret.write_bytes(b"\x89PNG-SECRET")
    for manifest in _manifests(folder):
        doc = json.loads(manifest.read_text())
        entry = manifest.parent
        if attack in ("symlink", "rehashed-symlink"):
            (entry / "0.png").unlink()
            (entry / "0.png").symlink_to(secret)
            if attack == "rehashed-symlink":  # the attacker also fixes the hash: the link itself is refused
                doc["hashes"]["0.png"] = file_hash(secret)
        elif attack == "changed-bytes":
            (entry / "0.png").write_bytes(b"\x89PNG-SECRET")
        elif attack == "extra-name":
            doc["files"]["evil"] = "7.png"
        elif attack == "dotdot-name":
            doc["files"]["..x"] = doc["files"].pop("own")
        elif attack == "absolute-file":
            doc["files"][""] = str(secret)
            doc["hashes"][str(secret)] = file_hash(secret)
        manifest.write_text(json.dumps(doc))
    again = _run(path)
    assert Drawing.drawn == 1
    got = {p.name: p.read_bytes() for p in again.out_dir.glob("drawing*.png")}
    assert got == first and all(b"SECRET" not in v for v in got.values())


def test_cache_api_refuses_names_it_did_not_write(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    png = tmp_path / "a.png"
    png.write_bytes(b"png")
    assert cache.save_figures("k" * 40, {"": png, "own": png}) is not None
    assert set(cache.load_figures("k" * 40) or {}) == {"", "own"}
    assert cache.save_figures("j" * 40, {"../up": png}) is None  # never stored


def test_edited_step_entry_local_file_is_a_miss(folder: Path) -> None:
    path = _recipe(
        folder,
        explainers=[{"name": "jacobian", "params": {"local": "full", "local_max_mb": 0.0001}}],
        report={"terminal": False, "plots": False, "html": False},
    )
    _run(path)
    (folder / "passwd.npy").write_bytes(b"")
    np.save(folder / "passwd.npy", np.full((3, 3), 7.0))
    entries = list((folder / "cache" / "steps").rglob("result.json"))
    assert entries
    for result in entries:
        doc = json.loads(result.read_text())
        doc["local_file"] = str(folder / "passwd.npy")
        result.write_text(json.dumps(doc))
    doc = load_results(_run(path).out_dir).doc
    assert not doc["explainers"][0].get("cached")  # refused, computed again
    for result in entries:  # a changed arrays file (its hash no longer matches) is a miss too
        raw = bytearray((result.parent / "arrays.npz").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (result.parent / "arrays.npz").write_bytes(bytes(raw))
    assert not load_results(_run(path).out_dir).doc["explainers"][0].get("cached")


def test_cached_step_keeps_its_spilled_local(folder: Path) -> None:
    """Item 9: a spilled ``local: full`` step is cached, and its cached copy still has ``local``."""
    path = _recipe(
        folder,
        explainers=[{"name": "jacobian", "params": {"local": "full", "local_max_mb": 0.0001}}],
        report={"terminal": False, "plots": False, "html": False},
    )
    first = _run(path)
    assert list((folder / "cache" / "steps").rglob("arrays.local.npy"))
    local1 = np.asarray(first.explanations["jacobian"].local)
    second = _run(path)
    doc = load_results(second.out_dir).doc
    assert doc["explainers"][0]["cached"] is True
    assert doc["explainers"][0]["local_file"]
    np.testing.assert_array_equal(np.asarray(second.explanations["jacobian"].local), local1)
    np.testing.assert_array_equal(np.load(second.out_dir / doc["explainers"][0]["local_file"]), local1)


# --- the key covers the code a model runs (item 8) ------------------------------------------

_HELPERS = """
import torch

def act(x):
    return {body}
"""

_NET = """
import torch
from torch import nn
import {helpers} as helpers_mod
from {helpers} import act

SCALE = 1.0


class Base(nn.Module):
    def encode(self, x):
        return act(self.enc(x)) * SCALE

    def decode(self, z):
        return self.dec(z)

    def forward(self, x):
        return self.decode(self.encode(x))


class Net(Base):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 2)
        self.dec = nn.Linear(2, 4)
"""


def _import_net(folder: Path, name: str, body: str, scale: str = "1.0") -> Any:
    (folder / f"{name}_helpers.py").write_text(_HELPERS.format(body=body))
    (folder / f"{name}.py").write_text(_NET.format(helpers=f"{name}_helpers").replace("SCALE = 1.0", f"SCALE = {scale}"))
    sys.path.insert(0, str(folder))
    try:
        for mod in (f"{name}_helpers", name):
            sys.modules.pop(mod, None)
        importlib.invalidate_caches()
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
    torch.manual_seed(0)
    return module.Net()


def test_model_key_sees_a_changed_module_level_helper(tmp_path: Path) -> None:
    a = module_fingerprint(_import_net(tmp_path, "hk_net", "torch.tanh(x)"))
    assert module_fingerprint(_import_net(tmp_path, "hk_net", "torch.tanh(x)")) == a  # same code, same weights: same key
    assert module_fingerprint(_import_net(tmp_path, "hk_net", "3 * torch.relu(x)")) != a  # the change
    assert module_fingerprint(_import_net(tmp_path, "hk_net", "torch.tanh(x)", scale="2.0")) != a  # a module constant


def test_model_key_sees_an_inherited_method_in_another_module(tmp_path: Path) -> None:
    (tmp_path / "hk_base.py").write_text(
        "from torch import nn\nclass Base(nn.Module):\n    def encode(self, x):\n        return self.enc(x)\n"
    )
    (tmp_path / "hk_child.py").write_text(
        textwrap.dedent("""
        from torch import nn
        from hk_base import Base
        class Net(Base):
            def __init__(self):
                super().__init__()
                self.enc = nn.Linear(4, 2)
    """)
    )

    def load() -> str:
        sys.path.insert(0, str(tmp_path))
        try:
            for mod in ("hk_base", "hk_child"):
                sys.modules.pop(mod, None)
            importlib.invalidate_caches()
            torch.manual_seed(0)
            return module_fingerprint(importlib.import_module("hk_child").Net())
        finally:
            sys.path.remove(str(tmp_path))

    before = load()
    (tmp_path / "hk_base.py").write_text(
        "from torch import nn\nclass Base(nn.Module):\n    def encode(self, x):\n        return 2 * self.enc(x)\n"
    )
    assert load() != before


def test_changed_helper_is_recomputed_not_served_from_the_cache(tmp_path: Path) -> None:
    """End to end: the issue's tanh -> 3*relu change gives other attributions, not the cached ones."""
    _data(tmp_path)
    net = _import_net(tmp_path, "e2e_net", "torch.tanh(x)")
    torch.save(net.state_dict(), tmp_path / "w.pt")
    path = _recipe(
        tmp_path,
        model={"path": "w.pt", "factory": "e2e_net:Net"},
        explainers=[{"name": "jacobian"}],
        report={"terminal": False, "plots": False, "html": False},
    )

    def run(body: str) -> tuple[bool, np.ndarray]:
        _import_net(tmp_path, "e2e_net", body)  # the file on disk and the imported code agree
        outcome = Runner(quiet=True).run_file(path)
        assert outcome.ok, outcome.failures
        entry = load_results(outcome.out_dir).doc["explainers"][0]
        return bool(entry.get("cached")), outcome.explanations["jacobian"].importance

    cached, tanh = run("torch.tanh(x)")
    assert not cached
    assert run("torch.tanh(x)")[0] is True
    cached, relu = run("3 * torch.relu(x)")
    assert not cached and not np.allclose(relu, tanh)
