"""AnnData Zarr stores (issue #25): a ``*.zarr`` directory written by ``adata.write_zarr`` read like an
``.h5ad`` — sparse CSR kept sparse, backed reads of only the rows a chunk needs, X / raw / layer,
obs labels and split, var_names — with results equal to the in-memory ones, a recipe's results.h5ad,
and clear errors for stores that are not AnnData, CSC on disk, and a missing zarr package."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import aeinterp
from aeinterp import cli
from aeinterp.errors import DataError, MissingDependencyError
from aeinterp.io.datasets import load_dataset
from aeinterp.io.rows import LazyRows
from tests.fixtures.cells import GENES, N_CELLS, CellAE, cells_adata, planted_cells

anndata = pytest.importorskip("anndata", reason="AnnData support needs the [scverse] extra (anndata)")
zarr = pytest.importorskip("zarr", reason="reading .zarr stores needs zarr (installed with anndata)")
pd = pytest.importorskip("pandas")
sp = pytest.importorskip("scipy.sparse")

pytestmark = pytest.mark.filterwarnings("ignore:Writing zarr v2 data:UserWarning")  # anndata's notice on write_zarr


@pytest.fixture(scope="module")
def cells() -> tuple[np.ndarray, CellAE]:
    return planted_cells()


@pytest.fixture(scope="module")
def stores(cells, tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    counts, _ = cells
    folder = tmp_path_factory.mktemp("zarr")
    out = {"sparse": folder / "sparse.zarr", "dense": folder / "dense.zarr"}
    cells_adata(counts, raw=True).write_zarr(out["sparse"])
    cells_adata(counts, sparse=False).write_zarr(out["dense"])
    return out


METHODS = [("deepshap", {"chunk_size": 16}), ("permutation", {"repeats": 2, "max_samples": 50})]


@pytest.mark.parametrize(("method", "params"), METHODS, ids=[m for m, _ in METHODS])
def test_sparse_and_dense_zarr_equal_the_in_memory_result(cells, stores, monkeypatch, method: str, params: dict) -> None:  # noqa: ANN001
    counts, net = cells
    reference = aeinterp.explain(net, np.log1p(counts), method, progress=False, seed=3, **params)
    storage = {
        ("sparse", "1024"): "sparse CSR in memory",
        ("sparse", "0"): "sparse CSR on disk (backed)",
        ("dense", "1024"): "dense in memory",
        ("dense", "0"): "dense on disk (backed)",
    }
    for limit in ("1024", "0"):
        monkeypatch.setenv("AEINTERP_BACKED_MB", limit)
        for kind in ("sparse", "dense"):
            got = aeinterp.explain(net, str(stores[kind]), method, progress=False, seed=3, **params)
            where = f"{kind} {limit}"
            np.testing.assert_allclose(got.importance, reference.importance, rtol=1e-5, atol=1e-7, err_msg=where)
            if got.local is not None:
                np.testing.assert_allclose(got.local, reference.local, rtol=1e-5, atol=1e-6, err_msg=where)
            data = got.extras["data"]
            assert data["source"] == "zarr" and data["matrix"] == "X", data
            assert data["storage"].startswith(storage[kind, limit]), data
            assert got.feature_names == GENES
            if got.local is not None:  # per-cell rows are named by obs_names
                assert got.sample_names[:2] == ["cell0", "cell1"]


def test_layer_raw_labels_and_split_of_a_zarr_store(cells, stores, monkeypatch) -> None:  # noqa: ANN001
    counts, net = cells
    for limit in ("1024", "0"):
        monkeypatch.setenv("AEINTERP_BACKED_MB", limit)
        raw = load_dataset(path=stores["sparse"], key="raw", label="cell_type", split_column="set")
        assert raw.describe()["matrix"] == "raw.X" and raw.feature_names == [g.lower() for g in GENES]
        np.testing.assert_array_equal(np.asarray(raw.x), counts * 2)
        np.testing.assert_array_equal(raw.explain_index, np.arange(0, N_CELLS, 4))  # obs['set'] == 'test'
        np.testing.assert_array_equal(raw.labels, [["T", "B", "NK"][i % 3] for i in range(N_CELLS)])
        layer = load_dataset(path=stores["sparse"], key="counts")
        assert layer.describe()["matrix"] == "layers['counts']" and layer.feature_names == GENES
        np.testing.assert_array_equal(np.asarray(layer.x), counts)
    # the API on a path: layer, split and labels as for an AnnData object, the same result as on the object
    on_path = aeinterp.explain(net, stores["sparse"], "deepshap", progress=False, layer="counts", split="set", labels="cell_type")
    on_object = aeinterp.explain(net, cells_adata(counts), "deepshap", progress=False, layer="counts", split="set", labels="cell_type")
    np.testing.assert_allclose(on_path.importance, on_object.importance, rtol=1e-5, atol=1e-7)
    assert on_path.sample_names == [f"cell{i}" for i in range(0, N_CELLS, 4)]
    cells_adata(counts).write_h5ad(stores["sparse"].with_name("cells.h5ad"))  # an .h5ad path is read the same way
    on_h5ad = aeinterp.explain(net, stores["sparse"].with_name("cells.h5ad"), "deepshap", progress=False, layer="counts", split="set")
    np.testing.assert_allclose(on_h5ad.importance, on_object.importance, rtol=1e-5, atol=1e-7)
    with pytest.raises(DataError, match=r"no layer 'spliced'; it has: X, raw, counts"):
        load_dataset(path=stores["sparse"], key="spliced")
    with pytest.raises(DataError, match=r"sparse.zarr's obs has no column 'donor' for the labels \(obs columns: cell_type, set\)"):
        aeinterp.explain(net, stores["sparse"], "deepshap", progress=False, labels="donor")
    with pytest.raises(DataError, match="no raw matrix"):
        load_dataset(path=stores["dense"], key="raw")


def test_a_chunk_reads_only_its_rows_when_the_matrix_is_over_the_dense_budget(cells, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """X dense (2,400 x 24 float32 = 225 KiB) is over a 64 KiB dense budget: whole-matrix reads are refused,
    chunked explainers (and output effects, on a sample of cells) read their rows from the backed store,
    and their results equal the in-memory ones."""
    counts, net = cells
    big = np.tile(counts, (15, 1))
    adata = cells_adata(big)
    adata.obs_names = [f"c{i}" for i in range(len(big))]
    adata.write_zarr(tmp_path / "big.zarr")
    reference = aeinterp.explain(net, np.log1p(big), "deepshap", progress=False, seed=1, chunk_size=64, n_background=40, local="none")
    monkeypatch.setenv("AEINTERP_BACKED_MB", "0")
    monkeypatch.setenv("AEINTERP_DENSE_BUDGET_MB", str(64 / 1024))
    data = load_dataset(path=tmp_path / "big.zarr")
    assert isinstance(data.x, LazyRows) and type(data.x.source).__name__ == "_CSRDataset"  # anndata's backed CSR, not a matrix
    assert isinstance(data.x.source.group, zarr.Group)
    with pytest.raises(DataError, match="dense budget"):
        np.asarray(data.x)
    np.testing.assert_array_equal(data.x[100:164], np.log1p(big[100:164]))  # one chunk's rows, read from indptr/indices/data slices
    got = aeinterp.explain(net, tmp_path / "big.zarr", "deepshap", progress=False, seed=1, chunk_size=64, n_background=40, local="none")
    np.testing.assert_allclose(got.importance, reference.importance, rtol=1e-5, atol=1e-7)
    # the signed output effects read only their sampled cells (they once densified the whole explain split)
    effects = aeinterp.explain(net, tmp_path / "big.zarr", "output_effects", progress=False, seed=1, max_samples=200)
    monkeypatch.setenv("AEINTERP_DENSE_BUDGET_MB", "2048")
    dense = aeinterp.explain(net, np.log1p(big), "output_effects", progress=False, seed=1, max_samples=200)
    np.testing.assert_allclose(effects.arrays["effect"], dense.arrays["effect"], rtol=1e-6, atol=1e-9)
    assert effects.extras["n_samples"] == 200


RECIPE = (
    "seed: 0\n"
    "data: {{path: {path}, layer: raw, label: cell_type, split: {{column: set, explain: [test]}}}}\n"
    "model: {{builtin: mlp, latent_dim: 3, options: {{hidden: [8]}}, train: {{epochs: 3}}}}\n"
    "explainers: [{{name: deepshap, params: {{n_background: 20}}}}]\n"
    "report: {{html: false, plots: false}}\n"
    "output: out\n"
)


def _cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    return cli.main(list(argv), console=Console(file=buf, width=200)), buf.getvalue()


def test_recipe_on_a_zarr_store_writes_results_h5ad(cells, stores, tmp_path: Path) -> None:  # noqa: ANN001
    counts, _ = cells
    (tmp_path / "r.yaml").write_text(RECIPE.format(path=stores["sparse"]))
    outcome = aeinterp.Runner(quiet=True).run_file(tmp_path / "r.yaml")
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["data"]["source"] == "zarr" and doc["data"]["matrix"] == "raw.X" and "sparse" in doc["data"]["storage"]
    res = anndata.read_h5ad(tmp_path / "out" / "results.h5ad")
    assert res.X is None and list(res.obs_names) == [f"cell{i}" for i in range(N_CELLS)]
    assert list(res.var_names) == [g.lower() for g in GENES]  # raw's genes
    np.testing.assert_allclose(res.varm["aeinterp_deepshap"].to_numpy().T, outcome.explanations["deepshap"].importance)
    values = res.obsm["aeinterp_deepshap_values"]
    assert np.isfinite(values[::4]).all() and np.isnan(values[1::4]).all()  # explained cells are obs['set'] == 'test'


def test_bad_stores_are_clear_errors_through_the_cli(cells, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    counts, _ = cells
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_array("x", shape=(4, 4), dtype="f4")  # a zarr, not AnnData
    (tmp_path / "empty.zarr").mkdir()
    (tmp_path / "file.zarr").write_text("not a store")
    csc = cells_adata(counts)
    csc.X = sp.csc_matrix(csc.X)
    csc.write_zarr(tmp_path / "csc.zarr")
    cases = {
        "plain.zarr": "is a Zarr store but not an AnnData one",
        "empty.zarr": "is not a Zarr store (no .zgroup or zarr.json in it)",
        "file.zarr": "AnnData writes one as a directory",
        "missing.zarr": "data store not found",
        "csc.zarr": "stored CSC on disk: reading rows would read the whole file each time; rewrite it as CSR "
        r"(adata.X = adata.X.tocsr(); adata.write_zarr(...))",
    }
    monkeypatch.setenv("AEINTERP_BACKED_MB", "0")
    for name, message in cases.items():
        (tmp_path / "r.yaml").write_text(RECIPE.format(path=name).replace("layer: raw, ", ""))
        code, out = _cli("run", str(tmp_path / "r.yaml"), "--quiet")
        flat = " ".join(out.split())
        assert code == 2 and message in flat, (name, out)
        assert "Traceback" not in out and "internal error" not in out, out
    monkeypatch.setenv("AEINTERP_BACKED_MB", "1024")  # in memory, a CSC matrix is converted to CSR once
    assert load_dataset(path=tmp_path / "csc.zarr").describe()["storage"].startswith("sparse CSR in memory")


def test_a_missing_zarr_package_is_named(cells, stores, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "zarr", None)  # as if zarr were not installed
    with pytest.raises(MissingDependencyError, match="zarr is required for reading .zarr stores") as info:
        load_dataset(path=stores["sparse"])
    assert "pip install" in str(info.value), str(info.value)
