"""The result cache: an unchanged step is reused and says so; a change to any input recomputes it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation, StepRef, hookimpl
from aeinterp.cli import main
from aeinterp.explainer import ALL_TARGETS
from aeinterp.io.datasets import load_dataset
from aeinterp.model import evaluate
from aeinterp.run.cache import Cache, data_fingerprint, module_fingerprint
from aeinterp.run.results import load_results
from aeinterp.runner import Runner
from aeinterp.targets import Target, evaluate_target, target_names_for


class Counting(Explainer):
    """Mean |target| times mean |feature|, plus seeded noise; counts its calls."""

    name = "counting"
    calls = 0

    class Params(ExplainerParams):
        scale: float = 1.0

    capabilities = Capabilities(targets=ALL_TARGETS)

    def explain(self, model, data, *, target, rng):  # noqa: ANN001
        type(self).calls += 1
        target = Target(target)
        x = self.take_rows(data, "explain", None, rng)
        y = evaluate(lambda b: evaluate_target(model, target, b), x, model=model).double().numpy()
        feat = np.abs(x.reshape(len(x), -1)).mean(axis=0)
        imp = self.params.scale * np.outer(np.abs(y).mean(axis=0), feat) + 1e-3 * rng.random((y.shape[1], feat.size))
        return Explanation(
            importance=imp, feature_names=data.group_names, target_names=target_names_for(model, data, target), target=target.value
        )


class Follower(Explainer):
    """Twice an earlier step's importance (reads it through a StepRef)."""

    name = "follower"
    calls = 0

    class Params(ExplainerParams):
        after: StepRef | None = None

    def explain(self, model, data, *, target, rng):  # noqa: ANN001
        type(self).calls += 1
        before = self.result_of(self.params.after)
        return Explanation(
            importance=2 * before.importance, feature_names=before.feature_names, target_names=before.target_names, target=before.target
        )


class Plugin:
    def __init__(self, version: str) -> None:
        self.__version__ = version

    @hookimpl
    def aeinterp_register_explainers(self, registry) -> None:  # noqa: ANN001
        registry.add(Counting)
        registry.add(Follower)


def _x(n: int = 80) -> np.ndarray:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, 2))
    return np.column_stack([f[:, 0], -f[:, 0], f[:, 1], rng.normal(size=n)]).astype(np.float32)


def _write_csv(path: Path, x: np.ndarray) -> None:
    path.write_text("a,b,c,d\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n")


def _recipe(tmp_path: Path, **changes: Any) -> Path:
    recipe: dict[str, Any] = {
        "seed": 1,
        "device": "cpu",
        "cache": str(tmp_path / "cache"),
        "data": {"path": "d.csv"},
        "model": {"builtin": "mlp", "latent_dim": 2, "options": {"hidden": [8]}, "train": {"epochs": 4}},
        "explainers": [{"name": "counting", "params": {"scale": 1.0}}, {"name": "follower", "params": {"after": "counting"}}],
        "report": {"terminal": False, "plots": False, "html": False},
        "output": "out",
    }
    for key, value in changes.items():
        node = recipe
        *parents, last = key.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(path: Path, version: str = "1.0", **runner: Any) -> tuple[dict, str, tuple[int, int]]:
    Counting.calls = Follower.calls = 0
    buf = io.StringIO()
    outcome = Runner(autoload=False, plugins=[Plugin(version)], console=Console(file=buf, width=200), **runner).run_file(path)
    assert outcome.ok, outcome.failures
    return load_results(outcome.out_dir).doc, buf.getvalue(), (Counting.calls, Follower.calls)


@pytest.fixture()
def csv_data(tmp_path: Path) -> Path:
    _write_csv(tmp_path / "d.csv", _x())
    return tmp_path


def _importance(doc: dict, alias: str) -> np.ndarray:
    return np.asarray(next(e for e in doc["explainers"] if e["alias"] == alias)["importance"])


def test_unchanged_rerun_is_cached_and_says_so(csv_data: Path) -> None:
    path = _recipe(csv_data)
    first, out1, calls1 = _run(path)
    assert calls1 == (1, 1) and "cached" not in out1 and not first["model"].get("cached")
    second, out2, calls2 = _run(path)
    assert calls2 == (0, 0)  # nothing recomputed, the model not retrained
    assert second["model"]["cached"] is True and "from the cache" in out2
    assert "counting on latent: cached" in out2 and "follower" in out2
    assert all(e["cached"] for e in second["explainers"])
    for alias in ("counting", "follower"):
        np.testing.assert_array_equal(_importance(first, alias), _importance(second, alias))
    with np.load(csv_data / "out" / "counting.npz") as npz:
        assert len(npz["explain_index"]) == second["data"]["n_explain"]  # a cached result keeps its row record


@pytest.mark.parametrize(
    ("change", "counting_recomputed", "retrained"),
    [
        ({"explainers.0.params.scale": 2.0}, True, False),  # params
        ({"seed": 2}, True, True),  # seed (the built-in model is seeded too)
        ({"targets": ["reconstruction"]}, True, False),  # target
        ({"model.train.epochs": 5}, True, True),  # model section -> other weights
        ({"data.split": {"seed": 7}}, True, True),  # the split is part of the data
    ],
    ids=["params", "seed", "target", "model-section", "split"],
)
def test_each_input_change_recomputes(csv_data: Path, change: dict, counting_recomputed: bool, retrained: bool) -> None:
    _run(_recipe(csv_data))
    doc, _, calls = _run(_recipe(csv_data, **change))
    assert calls[0] == int(counting_recomputed)
    assert calls[1] == 1  # the follower reads the counting step: a changed upstream result invalidates it
    assert bool(doc["model"].get("cached")) is not retrained


def test_changed_data_recomputes(csv_data: Path) -> None:
    _run(_recipe(csv_data))
    x = _x()
    x[3, 2] += 0.5  # one value of one row
    _write_csv(csv_data / "d.csv", x)
    doc, _, calls = _run(_recipe(csv_data))
    assert calls == (1, 1) and not doc["model"].get("cached")


def test_changed_explainer_version_recomputes(csv_data: Path) -> None:
    _run(_recipe(csv_data))
    doc, _, calls = _run(_recipe(csv_data), version="2.0")
    assert calls == (1, 1)
    assert doc["model"]["cached"] is True  # the model does not depend on the explainers


def test_changed_model_weights_recompute(csv_data: Path) -> None:
    from aeinterp.models.loading import build_builtin
    from aeinterp.models.training import TrainConfig

    data = load_dataset(path=csv_data / "d.csv")
    module, _ = build_builtin("mlp", data, latent_dim=2, options={"hidden": [8]}, train=TrainConfig(epochs=2))
    torch.save(module.checkpoint(), csv_data / "model.pt")
    path = _recipe(csv_data, model={"path": "model.pt"})
    _run(path)
    assert _run(path)[2] == (0, 0)
    with torch.no_grad():
        next(module.parameters())[0, 0] += 1e-3  # one weight
    torch.save(module.checkpoint(), csv_data / "model.pt")
    assert _run(path)[2] == (1, 1)


def test_upstream_change_invalidates_the_step_that_reads_it(csv_data: Path) -> None:
    _run(_recipe(csv_data))
    doc, _, calls = _run(_recipe(csv_data, **{"explainers.0.params.scale": 3.0}))
    assert calls == (1, 1)
    np.testing.assert_allclose(_importance(doc, "follower"), 2 * _importance(doc, "counting"))


def test_no_cache_and_cache_dir_from_the_cli(csv_data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = _recipe(csv_data, cache=True, explainers=[{"name": "zero_ablation"}])
    other = tmp_path_factory.mktemp("elsewhere")
    assert main(["run", str(path), "--quiet", "--cache-dir", str(other), "--out", str(csv_data / "o1")]) == 0
    assert list((other / "steps").rglob("result.json")) and list((other / "models").rglob("model.pt"))
    nothing = tmp_path_factory.mktemp("nothing")
    assert main(["run", str(path), "--quiet", "--no-cache", "--cache-dir", str(nothing), "--out", str(csv_data / "o2")]) == 0
    assert not any(nothing.iterdir())
    doc = load_results(csv_data / "o2").doc
    assert not doc["model"].get("cached") and not any(e.get("cached") for e in doc["explainers"])


def test_default_folder_is_the_environment_variable(csv_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEINTERP_CACHE_DIR", str(csv_data / "envcache"))
    assert Cache().root == csv_data / "envcache"
    _run(_recipe(csv_data, cache=True))
    assert list((csv_data / "envcache" / "steps").rglob("arrays.npz"))


def test_damaged_entry_is_a_miss(csv_data: Path) -> None:
    path = _recipe(csv_data)
    _run(path)
    for npz in (csv_data / "cache" / "steps").rglob("arrays.npz"):
        npz.write_bytes(b"not a zip")
    for pt in (csv_data / "cache" / "models").rglob("model.pt"):
        pt.write_bytes(b"")
    doc, _, calls = _run(path)
    assert calls == (1, 1) and not doc["model"].get("cached")
    assert _run(path)[2] == (0, 0)  # the damaged entries were replaced


def test_fingerprints_see_small_changes() -> None:
    data = load_dataset(builtin="wine")
    other_split = load_dataset(builtin="wine", split_seed=1)
    assert data_fingerprint(data) == data_fingerprint(load_dataset(builtin="wine"))
    assert data_fingerprint(data) != data_fingerprint(other_split)
    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    before = module_fingerprint(module)
    with torch.no_grad():
        module[0].bias[1] += 1e-6
    assert module_fingerprint(module) != before


class Drawing(Counting):
    """Counting, with a figure of its own; counts how often its figures are drawn."""

    name = "drawing"
    drawn = 0

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        from matplotlib.figure import Figure

        cls.drawn += 1
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().plot(explanation.importance.ravel())
        return {"own": fig}


class DrawingPlugin(Plugin):
    @hookimpl
    def aeinterp_register_explainers(self, registry) -> None:  # noqa: ANN001
        registry.add(Drawing)


def test_cached_steps_get_their_figures_copied_not_redrawn(csv_data: Path) -> None:
    def recipe(scale: float, cache: bool = True) -> Path:
        return _recipe(
            csv_data,
            explainers=[{"name": "drawing", "params": {"scale": scale}}],
            report={"terminal": False, "plots": True, "html": False},
            **({} if cache else {"cache": False}),
        )

    def run(path: Path) -> dict[str, bytes]:
        Drawing.drawn = 0
        outcome = Runner(autoload=False, plugins=[DrawingPlugin("1.0")], quiet=True).run_file(path)
        assert outcome.ok, outcome.failures
        return {p.name: p.read_bytes() for p in sorted(outcome.out_dir.glob("drawing*.png"))}

    first = run(recipe(1.0))
    assert Drawing.drawn == 1 and {"drawing.png", "drawing.own.png"} <= set(first)
    again = run(recipe(1.0))
    assert Drawing.drawn == 0 and again == first  # copied from the cache, byte for byte
    assert list((csv_data / "cache" / "figures").glob("*/*/figures.json"))
    changed = run(recipe(3.0))
    assert Drawing.drawn == 1 and changed["drawing.png"] != first["drawing.png"]  # other values: drawn again
    assert run(recipe(1.0, cache=False)) == first and Drawing.drawn == 1  # no cache: drawn, the same picture
