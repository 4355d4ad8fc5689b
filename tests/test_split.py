"""Your own split: separate files, a split column or row indices; kept exactly, recorded in split.npz and per step."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from aeinterp.errors import DataError, RecipeError
from aeinterp.io.datasets import load_dataset
from aeinterp.run.results import load_results
from aeinterp.runner import Runner


def _data(n: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 2))
    return np.column_stack([f[:, 0], 2 * f[:, 0], f[:, 1], rng.normal(size=n)]).astype(np.float32)


def _csv(path: Path, x: np.ndarray, extra: dict[str, list[str]] | None = None) -> Path:
    extra = extra or {}
    lines = [",".join(["a", "b", "c", "d", *extra])]
    lines += [",".join([*(repr(float(v)) for v in row), *(extra[k][i] for k in extra)]) for i, row in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(tmp_path: Path, data: dict, explainers: list[dict]) -> tuple[Path, dict]:
    recipe = {
        "seed": 3,
        "data": data,
        "model": {"builtin": "mlp", "latent_dim": 2, "options": {"hidden": [8]}, "train": {"epochs": 3}},
        "explainers": explainers,
        "output": "out",
        "report": {"plots": False, "html": False, "terminal": False},
        "device": "cpu",
        "cache": False,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    outcome = Runner(console=Console(file=io.StringIO()), quiet=True).run_file(path)
    assert outcome.ok, outcome.failures
    return outcome.out_dir, load_results(outcome.out_dir).doc


def test_held_out_rows_by_index_are_exactly_the_rows_explained(tmp_path: Path) -> None:
    """Issue #10's user: trained on rows 0-89, kept 90-119 as the test set."""
    x = _data()
    _csv(tmp_path / "d.csv", x)
    out, doc = _run(
        tmp_path,
        {"path": "d.csv", "split": {"explain_rows": list(range(90, 120))}},
        [
            {"name": "permutation", "params": {"repeats": 2}},
            {"name": "mutual_information"},
            {"name": "deepshap", "params": {"max_samples": 7, "n_background": 20}},
        ],
    )
    with np.load(out / "split.npz") as split:
        assert split["explain_index"].tolist() == list(range(90, 120))
        assert split["fit_index"].tolist() == list(range(90))
        assert split["explain_rows"].tolist() == list(range(90, 120))
    assert doc["data"]["split"]["method"] == "rows" and doc["data"]["n_explain"] == 30
    with np.load(out / "permutation.npz") as perm:
        assert perm["explain_index"].tolist() == list(range(90, 120))  # every explain row, none of the fit rows
    with np.load(out / "mutual_information.npz") as mi:  # MI defaults to the explain split too
        assert mi["explain_index"].tolist() == list(range(90, 120))
    with np.load(out / "deepshap.npz") as ds:
        assert len(ds["explain_index"]) == 7 and set(ds["explain_index"]) <= set(range(90, 120))
        assert len(ds["fit_index"]) == 20 and set(ds["fit_index"]) <= set(range(90))
    mi_entry = next(e for e in doc["explainers"] if e["name"] == "mutual_information")
    assert mi_entry["extras"]["n_samples"] == 30 and mi_entry["extras"]["split"] == "explain"


def test_index_files_keep_the_users_order(tmp_path: Path) -> None:
    x = _data(50)
    path = _csv(tmp_path / "d.csv", x)
    np.save(tmp_path / "explain.npy", np.array([40, 3, 17, 8]))
    (tmp_path / "fit.txt").write_text("\n".join(str(i) for i in range(20, 40)) + "\n")
    data = load_dataset(path=path, explain_rows="explain.npy", fit_rows="fit.txt", base_dir=tmp_path)
    assert data.explain_index.tolist() == [40, 3, 17, 8]  # not re-sorted, not re-shuffled
    assert data.fit_index.tolist() == list(range(20, 40))
    np.testing.assert_array_equal(data.x_explain, x[[40, 3, 17, 8]])
    for bad, message in [([3, 3], "row 3 is listed more than once"), ([50], "outside the data's rows 0..49"), ([1.5], "non-integer")]:
        with pytest.raises(DataError, match=message):
            load_dataset(path=path, explain_rows=bad)
    with pytest.raises(DataError, match="index file not found"):
        load_dataset(path=path, explain_rows="nope.npy", base_dir=tmp_path)


def test_split_column_marks_the_rows(tmp_path: Path) -> None:
    x = _data(30)
    sets = ["train", "test", "val"] * 10
    path = _csv(tmp_path / "d.csv", x, {"set": sets})
    data = load_dataset(path=path, split_column="set", explain_values=["test"], fit_values=["train"])
    assert data.explain_index.tolist() == [i for i in range(30) if sets[i] == "test"]
    assert data.fit_index.tolist() == [i for i in range(30) if sets[i] == "train"]  # "val" rows are in neither
    assert data.feature_names == ["a", "b", "c", "d"]  # the split column is not a feature
    default_fit = load_dataset(path=path, split_column="set", explain_values=["test", "val"])
    assert default_fit.fit_index.tolist() == [i for i in range(30) if sets[i] == "train"]
    with pytest.raises(DataError, match=r"no row has set in \['holdout'\].*values found: test, train, val"):
        load_dataset(path=path, split_column="set", explain_values=["holdout"])


def test_separate_files_and_a_recipe_split_column(tmp_path: Path) -> None:
    x = _data(80)
    _csv(tmp_path / "train.csv", x[:60])
    _csv(tmp_path / "test.csv", x[60:])
    out, doc = _run(tmp_path, {"fit_path": "train.csv", "explain_path": "test.csv"}, [{"name": "zero_ablation"}])
    with np.load(out / "split.npz") as split:
        assert split["explain_index"].tolist() == list(range(60, 80))
        assert split["fit_index"].tolist() == list(range(60))
    assert doc["data"]["split"]["method"] == "files"
    data = load_dataset(path=tmp_path / "train.csv", explain_path=tmp_path / "test.csv")
    np.testing.assert_array_equal(data.x_explain, x[60:])
    (tmp_path / "other.csv").write_text("a,b,c,e\n1,2,3,4\n5,6,7,8\n")
    with pytest.raises(DataError, match="different columns .*'e' vs 'd'"):
        load_dataset(path=tmp_path / "train.csv", explain_path=tmp_path / "other.csv")


def test_user_split_survives_dropped_nan_rows(tmp_path: Path) -> None:
    x = _data(40)
    x[5, 1] = np.nan
    x[35, 0] = np.nan
    path = _csv(tmp_path / "d.csv", x)
    with pytest.warns(UserWarning, match="dropping 2 of 40"):
        data = load_dataset(path=path, explain_rows=list(range(30, 40)), nan="drop")
    arrays = data.split_arrays()
    assert arrays["explain_rows"].tolist() == [30, 31, 32, 33, 34, 36, 37, 38, 39]  # file rows, 35 dropped
    np.testing.assert_array_equal(data.x_explain, x[arrays["explain_rows"]])
    assert 5 not in arrays["fit_rows"].tolist() and len(arrays["fit_rows"]) == 29


def test_recipe_split_keys_are_validated(tmp_path: Path) -> None:
    from aeinterp.recipe.schema import parse_recipe

    base = "model: {builtin: mlp, latent_dim: 2}\nexplainers: [{name: permutation}]\n"
    with pytest.raises(RecipeError, match="either `column` or `explain_rows`"):
        parse_recipe("data: {path: d.csv, split: {column: set, explain_rows: [1]}}\n" + base)
    with pytest.raises(RecipeError, match="`fit_path` needs `explain_path`"):
        parse_recipe("data: {fit_path: d.csv}\n" + base)
    loaded = parse_recipe("data: {path: d.csv, split: {column: set, explain: [test, val]}}\n" + base)
    assert loaded.recipe.data.split.values("explain") == ["test", "val"]
    with pytest.raises(DataError, match="would subsample your own split"):
        load_dataset(path=_csv(tmp_path / "d.csv", _data(20)), explain_rows=[1, 2], max_samples=10)
