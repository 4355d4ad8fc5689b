"""Data loaders: CSV (pandas), Parquet, AnnData .h5ad, memory-mapped .npy; CSV edge cases give located errors."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from aeinterp.cli import main
from aeinterp.errors import DataError
from aeinterp.io.datasets import load_dataset


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _table(n: int = 40, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), ["g1", "g2", "g3", "g4"]


def _csv(path: Path, x: np.ndarray, names: list[str], extra: dict[str, list[str]] | None = None) -> Path:
    extra = extra or {}
    head = ",".join(names + list(extra))
    rows = [",".join([repr(float(v)) for v in row] + [extra[k][i] for k in extra]) for i, row in enumerate(x)]
    return _write(path, head + "\n" + "\n".join(rows) + "\n")


def test_csv_values_names_and_labels(tmp_path: Path) -> None:
    x, names = _table()
    labels = [f"c{i % 3}" for i in range(len(x))]
    path = _csv(tmp_path / "d.csv", x, names, {"kind_of": labels})
    data = load_dataset(path=path, label="kind_of")
    np.testing.assert_array_equal(data.x, x)
    assert data.feature_names == names
    assert data.labels.tolist() == labels


def test_csv_missing_values_as_before(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.csv", "a,b\n1,2\n3,NA\n5,\n7,8\n9,10\n11,nan\n")
    with pytest.raises(DataError, match="NaN or infinite values in 3 of 6 samples"):
        load_dataset(path=path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(path=path, nan="drop")
    assert any("dropping 3 of 6" in str(w.message) for w in caught)
    np.testing.assert_array_equal(data.x, [[1, 2], [7, 8], [9, 10]])
    assert data.split_arrays()["explain_rows"].tolist() == [[0, 3, 4][i] for i in data.explain_index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,a\n1,2,3\n4,5,6\n", "header names 'a' more than once"),
        ("a,b,c\n1,2,3\n4,5\n6,7,8\n", r"short.csv:3: 2 values, but the header has 3 columns"),
        ("a,b,c\n1,2,3\n4,5,6,7\n6,7,8\n", r"short.csv:3: 4 values, but the header has 3 columns"),
        ("a,b,c\n1,2,3,9\n4,5,6\n7,8,9\n", r"short.csv:2: 4 values, but the header has 3 columns"),
        ("a,b\n1,x\n3,4\n", "column 'b' is not numeric \\(value 'x', data row 1\\)"),
        ("", "is empty"),
        ("a,b\n", "header but no rows"),
    ],
    ids=["duplicate-header", "short-row", "long-row", "long-first-row", "not-numeric", "empty", "header-only"],
)
@pytest.mark.parametrize("reader", ["pandas", "python"])
def test_csv_bad_files_are_located_errors(tmp_path: Path, text: str, message: str, reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if reader == "python":
        monkeypatch.setitem(sys.modules, "pandas", None)  # the reader without pandas (a core-only install)
    with pytest.raises(DataError, match=message):
        load_dataset(path=_write(tmp_path / "short.csv", text))


@pytest.mark.parametrize("reader", ["pandas", "python"])
def test_csv_trailing_blank_lines_are_accepted(tmp_path: Path, reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if reader == "python":
        monkeypatch.setitem(sys.modules, "pandas", None)
    data = load_dataset(path=_write(tmp_path / "t.csv", "a,b\n1,2\n3,4\n5,6\n\n\n"))
    np.testing.assert_array_equal(data.x, [[1, 2], [3, 4], [5, 6]])
    labelled = load_dataset(path=_write(tmp_path / "l.csv", "a,y,b\n1,u,2\n3,v,4\n5,w,6\n"), label="y")
    assert labelled.feature_names == ["a", "b"] and labelled.labels.tolist() == ["u", "v", "w"]
    np.testing.assert_array_equal(labelled.x, [[1, 2], [3, 4], [5, 6]])


def test_latin1_csv_needs_its_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path / "l.csv", "caf\xe9,b\n1,2\n3,4\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not utf-8 text .*`encoding: latin-1`"):
        load_dataset(path=path)
    assert load_dataset(path=path, encoding="latin-1").feature_names == ["café", "b"]
    with pytest.raises(DataError, match="unknown text encoding 'klingon'"):
        load_dataset(path=path, encoding="klingon")


def test_directory_and_upper_case_suffix_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataError, match="is a folder, not a file"):
        load_dataset(path=tmp_path / "folder.csv")
    np.save(tmp_path / "data.npy", np.zeros((4, 2), np.float32))
    (tmp_path / "data.npy").rename(tmp_path / "data.NPY")
    with pytest.raises(DataError, match=r"lower case \(.npy\)"):
        load_dataset(path=tmp_path / "data.NPY")
    _write(tmp_path / "x.xlsx", "not really")
    with pytest.raises(DataError, match="unsupported data file x.xlsx"):
        load_dataset(path=tmp_path / "x.xlsx")


def test_bad_data_paths_exit_2_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {path: dir}\nmodel: {builtin: mlp, latent_dim: 2}\nexplainers: [{name: permutation}]\n")
    assert main(["run", str(recipe), "--quiet", "--no-cache"]) == 2


def test_parquet_reads_like_the_csv(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="the [parquet] extra (pyarrow) is not installed")
    x, names = _table()
    frame = pd.DataFrame(x, columns=names)
    frame["cell"] = [f"t{i % 2}" for i in range(len(x))]
    frame.to_parquet(tmp_path / "d.parquet")
    data = load_dataset(path=tmp_path / "d.parquet", label="cell")
    np.testing.assert_array_equal(data.x, x)
    assert data.feature_names == names and data.labels[:2].tolist() == ["t0", "t1"]
    frame["text"] = "abc"
    frame.to_parquet(tmp_path / "e.parquet")
    with pytest.raises(DataError, match="column 'text' is not numeric"):
        load_dataset(path=tmp_path / "e.parquet", label="cell")


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_h5ad_x_var_names_and_obs_columns(tmp_path: Path, sparse: bool) -> None:
    anndata = pytest.importorskip("anndata", reason="the [anndata] extra is not installed")
    pd = pytest.importorskip("pandas")
    from scipy import sparse as sp

    rng = np.random.default_rng(1)
    counts = rng.poisson(0.7, size=(60, 12)).astype(np.float32)
    genes = [f"GENE{i}" for i in range(12)]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([["T", "B", "NK"][i % 3] for i in range(60)]),
            "set": ["test" if i >= 45 else "train" for i in range(60)],
        },
        index=[f"cell{i}" for i in range(60)],
    )
    adata = anndata.AnnData(X=sp.csr_matrix(counts) if sparse else counts, obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["scaled"] = counts / 2
    adata.write_h5ad(tmp_path / "cells.h5ad")
    data = load_dataset(path=tmp_path / "cells.h5ad", label="cell_type", split_column="set", explain_values=["test"])
    np.testing.assert_array_equal(data.x, counts)
    assert data.feature_names == genes
    assert data.labels[:3].tolist() == ["T", "B", "NK"]
    assert data.explain_index.tolist() == list(range(45, 60))
    assert data.fit_index.tolist() == list(range(45))
    layer = load_dataset(path=tmp_path / "cells.h5ad", key="scaled")
    np.testing.assert_array_equal(layer.x, counts / 2)
    with pytest.raises(DataError, match="no layer 'spliced'; it has: X, scaled"):
        load_dataset(path=tmp_path / "cells.h5ad", key="spliced")
    with pytest.raises(DataError, match="has no raw matrix"):  # `raw` names adata.raw.X (docs/singlecell.md)
        load_dataset(path=tmp_path / "cells.h5ad", key="raw")
    with pytest.raises(DataError, match="no column 'donor' for the label"):
        load_dataset(path=tmp_path / "cells.h5ad", label="donor")


def test_npy_is_memory_mapped_and_only_explain_rows_are_read(tmp_path: Path) -> None:
    import tracemalloc

    x = np.random.default_rng(2).normal(size=(20_000, 400)).astype(np.float32)  # 32 MB
    np.save(tmp_path / "big.npy", x)
    tracemalloc.start()
    try:
        data = load_dataset(path=tmp_path / "big.npy", explain_size=100)
        explained = data.x_explain
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(data.x, np.memmap)  # not loaded into memory
    assert peak < 0.3 * x.nbytes, f"loading and taking 100 explain rows allocated {peak / 1e6:.1f} MB of a {x.nbytes / 1e6:.1f} MB file"
    np.testing.assert_array_equal(explained, x[data.explain_index])
    # float64 files are converted (a copy), and the values stay the same
    np.save(tmp_path / "f64.npy", x.astype(np.float64))
    np.testing.assert_array_equal(load_dataset(path=tmp_path / "f64.npy").x, x)


def test_npz_label_array_and_missing_label(tmp_path: Path) -> None:
    x, _ = _table()
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(len(x)) % 2, group=np.arange(len(x)) % 4)
    assert load_dataset(path=tmp_path / "d.npz").labels.tolist()[:4] == [0, 1, 0, 1]
    assert load_dataset(path=tmp_path / "d.npz", label="group").labels.tolist()[:4] == [0, 1, 2, 3]
    with pytest.raises(DataError, match="no column 'nope' for the label"):
        load_dataset(path=tmp_path / "d.npz", label="nope")
