"""CSV row labels: `index:` in the data section, and pandas' default index column recognised with the right advice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aeinterp.errors import DataError
from aeinterp.io.datasets import load_dataset
from aeinterp.recipe.sections import DataSection

pd = pytest.importorskip("pandas")


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.standard_normal((30, 3)), columns=["a", "b", "c"], index=[f"cell_{i}" for i in range(30)])


def test_pandas_default_index_column_is_recognised_and_the_advice_is_index_0(frame: pd.DataFrame, tmp_path: Path) -> None:
    frame.to_csv(tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"first column has no name.*df\.to_csv\(\).*`index: 0`") as err:
        load_dataset(path=tmp_path / "x.csv")
    assert "label:" not in str(err.value)
    frame.reset_index(drop=True).to_csv(tmp_path / "range.csv")  # a 0..n-1 index: the same advice
    with pytest.raises(DataError, match="`index: 0`"):
        load_dataset(path=tmp_path / "range.csv")


def test_index_0_reads_the_unnamed_column_as_row_names(frame: pd.DataFrame, tmp_path: Path) -> None:
    frame.to_csv(tmp_path / "x.csv")
    data = load_dataset(path=tmp_path / "x.csv", index=0, explain_size=10)
    assert data.feature_names == ["a", "b", "c"]
    assert data.row_names == [f"cell_{i}" for i in range(30)]
    np.testing.assert_allclose(data.x, frame.to_numpy(dtype=np.float32))


def test_a_named_index_column_by_name_and_with_dropped_rows(frame: pd.DataFrame, tmp_path: Path) -> None:
    frame.index.name = "cell"
    frame.iloc[4, 1] = np.nan
    frame.to_csv(tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"column 'cell' is not numeric.*`index: cell`.*`label: cell`"):
        load_dataset(path=tmp_path / "x.csv", nan="drop")
    with pytest.warns(UserWarning, match="dropping 1"):
        data = load_dataset(path=tmp_path / "x.csv", index="cell", nan="drop")
    assert "cell_4" not in data.row_names and len(data.row_names) == 29 and data.row_names[4] == "cell_5"
    with pytest.raises(DataError, match="no column 'id' for `index:`"):
        load_dataset(path=tmp_path / "x.csv", index="id")
    with pytest.raises(DataError, match="outside the header's columns"):
        load_dataset(path=tmp_path / "x.csv", index=7)


def test_the_recipe_data_section_takes_index() -> None:
    assert DataSection(path="x.csv", index=0).index == 0
    assert DataSection(path="x.csv", index="cell").index == "cell"


def test_index_is_refused_for_files_that_are_not_csv(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((5, 2), dtype=np.float32))
    with pytest.raises(DataError, match="not a CSV"):
        load_dataset(path=tmp_path / "x.npy", index=0)
