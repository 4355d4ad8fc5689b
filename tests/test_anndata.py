"""AnnData and sparse data in and out (issue #25): sparse / backed reads equal the dense result,
AnnData options (layer, raw, obs labels and split), LazyRows' ndarray behaviour and budget,
to_anndata round trips, a scanpy dotplot, and the recipe's results.h5ad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import aeinterp
from aeinterp.errors import DataError
from aeinterp.io.anndata import anndata_dataset
from aeinterp.io.datasets import load_dataset
from aeinterp.io.rows import LazyRows, column_stats
from tests.fixtures.cells import GENES, N_CELLS, CellAE, cells_adata, planted_cells

anndata = pytest.importorskip("anndata", reason="AnnData support needs the [scverse] extra (anndata)")
pd = pytest.importorskip("pandas")
sp = pytest.importorskip("scipy.sparse")


@pytest.fixture(scope="module")
def cells() -> tuple[np.ndarray, CellAE]:
    return planted_cells()


METHODS = [("deepshap", {"chunk_size": 16}), ("integrated_gradients", {}), ("permutation", {"repeats": 2, "max_samples": 50})]


@pytest.mark.parametrize(("method", "params"), METHODS, ids=[m for m, _ in METHODS])
def test_sparse_anndata_and_backed_equal_dense(cells, tmp_path: Path, method: str, params: dict) -> None:  # noqa: ANN001
    counts, net = cells
    logged = np.log1p(counts)
    dense = aeinterp.explain(net, logged, method, progress=False, seed=3, **params)
    adata = cells_adata(counts)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    backed = anndata.read_h5ad(tmp_path / "cells.h5ad", backed="r")
    for name, X in [
        ("csr", sp.csr_matrix(logged)),
        ("csc", sp.csc_matrix(logged)),
        ("anndata", adata),
        ("backed", backed),
        ("dense anndata", cells_adata(counts, sparse=False)),
    ]:
        got = aeinterp.explain(net, X, method, progress=False, seed=3, **params)
        np.testing.assert_allclose(got.importance, dense.importance, rtol=1e-5, atol=1e-7, err_msg=name)
        if got.local is not None:
            np.testing.assert_allclose(got.local, dense.local, rtol=1e-5, atol=1e-6, err_msg=name)
    assert got.feature_names == GENES


def test_h5ad_files_read_sparse_or_backed_equal_dense_with_standardisation(cells, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    counts, _ = cells
    adata = cells_adata(counts)
    adata.raw = anndata.AnnData(X=sp.csr_matrix(counts * 2), var=pd.DataFrame(index=[g.lower() for g in GENES]))
    adata.write_h5ad(tmp_path / "c.h5ad")
    np.save(tmp_path / "c.npy", np.log1p(counts))
    reference = load_dataset(path=tmp_path / "c.npy", standardize=True, split_seed=4)
    for limit, storage in (("1024", "in memory"), ("0", "backed")):
        monkeypatch.setenv("AEINTERP_BACKED_MB", limit)
        data = load_dataset(path=tmp_path / "c.h5ad", standardize=True, split_seed=4, label="cell_type")
        assert isinstance(data.x, LazyRows) and storage in data.describe()["storage"]
        assert data.describe()["matrix"] == "X"
        np.testing.assert_array_equal(data.fit_index, reference.fit_index)
        np.testing.assert_allclose(np.asarray(data.x_explain), np.asarray(reference.x_explain), rtol=1e-5, atol=1e-5)
        raw = load_dataset(path=tmp_path / "c.h5ad", key="raw")
        assert raw.describe()["matrix"] == "raw.X" and raw.feature_names == [g.lower() for g in GENES]
        np.testing.assert_array_equal(np.asarray(raw.x), counts * 2)
        layer = load_dataset(path=tmp_path / "c.h5ad", key="counts")
        assert layer.describe()["matrix"] == "layers['counts']"
        np.testing.assert_array_equal(np.asarray(layer.x), counts)
    with pytest.raises(DataError, match=r"no layer 'spliced'; it has: X, raw, counts"):
        load_dataset(path=tmp_path / "c.h5ad", key="spliced")


def test_lazy_rows_behave_like_the_dense_array(monkeypatch) -> None:  # noqa: ANN001
    rng = np.random.default_rng(5)
    dense = (rng.random((50, 7)) * (rng.random((50, 7)) < 0.3)).astype(np.float32)
    extra = rng.normal(size=(50, 2))
    lazy = LazyRows(sp.csr_matrix(dense), extra=extra)
    full = np.hstack([dense, extra]).astype(np.float32)
    assert lazy.shape == (50, 9) and len(lazy) == 50 and lazy.ndim == 2 and lazy.nbytes == full.nbytes
    np.testing.assert_array_equal(lazy[3], full[3])
    np.testing.assert_array_equal(lazy[5:40:3], full[5:40:3])
    np.testing.assert_array_equal(lazy[[7, 2, 7]], full[[7, 2, 7]])  # unsorted, repeated rows
    np.testing.assert_array_equal(lazy[np.arange(50) % 3 == 0], full[np.arange(50) % 3 == 0])
    rows, cols = np.array([[4, 1], [9, 4]]), np.array([0, 8])
    np.testing.assert_array_equal(lazy[rows[..., None], cols], full[rows[..., None], cols])  # numpy's broadcasting rules
    np.testing.assert_array_equal(lazy[2:6, 1:3], full[2:6, 1:3])
    view = lazy.rows_view(np.array([10, 20, 30, 40])).rows_view(np.array([3, 0]))
    np.testing.assert_array_equal(np.asarray(view), full[[40, 10]])  # extra columns travel with their rows
    assert view.reshape(len(view), -1) is view
    np.testing.assert_allclose(lazy.mean(axis=0), full.mean(axis=0), rtol=1e-6)
    mean, std = column_stats(lazy, np.arange(0, 50, 2))
    np.testing.assert_allclose(std, full[::2].astype(np.float64).std(axis=0), rtol=1e-5)
    monkeypatch.setenv("AEINTERP_DENSE_BUDGET_MB", "0.001")  # ~1 kB: 20 rows of 9 floats fit, 50 do not
    np.asarray(lazy[:20])
    with pytest.raises(DataError, match="dense budget"):
        np.asarray(lazy)


def test_anndata_options_and_their_errors(cells) -> None:  # noqa: ANN001
    counts, net = cells
    adata = cells_adata(counts)
    adata.raw = adata.copy()
    exp = aeinterp.explain(net, adata, "deepshap", progress=False, layer="raw", split="set", labels="cell_type")
    assert exp.extras["data"]["matrix"] == "raw.X"
    np.testing.assert_array_equal(exp.arrays["explain_index"], np.arange(0, N_CELLS, 4))  # obs['set'] == 'test'
    assert len(exp.local) == N_CELLS // 4
    assert exp.sample_names == [f"cell{i}" for i in range(0, N_CELLS, 4)]  # the explained cells by their obs_names
    on_counts = aeinterp.explain(net, adata, "deepshap", progress=False, layer="counts")
    assert on_counts.extras["data"]["matrix"] == "layers['counts']"
    assert not np.allclose(on_counts.importance, exp.importance)
    with pytest.raises(DataError, match="no layer 'spliced'; it has: X, raw, counts"):
        aeinterp.explain(net, adata, "deepshap", progress=False, layer="spliced")
    with pytest.raises(DataError, match="obs has no column 'donor' for the labels"):
        aeinterp.explain(net, adata, "deepshap", progress=False, labels="donor")
    with pytest.raises(DataError, match="no cell has obs\\['set'\\] in \\['holdout'\\]"):
        anndata_dataset(adata, split="set", explain_values=["holdout"])
    with pytest.raises(DataError, match="split=<column>"):
        aeinterp.explain(net, adata, "deepshap", progress=False, background=adata)
    with pytest.raises(DataError, match="select parts of an AnnData; X is a ndarray"):
        aeinterp.explain(net, np.log1p(counts), "deepshap", progress=False, layer="raw", labels="x")
    with pytest.raises(DataError, match="tabular data"):
        aeinterp.explain(net, adata, "deepshap", progress=False, kind="image")


def test_to_anndata_round_trip(cells, tmp_path: Path) -> None:  # noqa: ANN001
    counts, net = cells
    adata = cells_adata(counts)
    results = aeinterp.explain_all(net, adata, ["deepshap", ("permutation", {"repeats": 2})], progress=False, split="set")
    results.to_anndata(adata)
    adata.write_h5ad(tmp_path / "out.h5ad")
    back = anndata.read_h5ad(tmp_path / "out.h5ad")
    shap = results["deepshap"]
    table = back.varm["aeinterp_deepshap"]
    assert list(table.columns) == ["z0", "z1", "z2"] and list(table.index) == GENES
    np.testing.assert_allclose(table.to_numpy().T, shap.importance)
    np.testing.assert_allclose(back.varm["aeinterp_permutation"].to_numpy().T, results["permutation"].importance)
    codes = back.obsm["aeinterp_deepshap_values"]
    explained = np.arange(0, N_CELLS, 4)
    with torch.no_grad():
        expected = net.encoder(torch.as_tensor(np.log1p(counts[explained]))).numpy()
    np.testing.assert_allclose(codes[explained], expected, rtol=1e-5, atol=1e-6)  # each explained cell's code, in its row
    assert np.isnan(codes[1]).all()  # a background cell was not explained
    np.testing.assert_allclose(back.obsm["aeinterp_deepshap_total"][explained], np.abs(shap.local).sum(axis=2), rtol=1e-5)
    meta = back.uns["aeinterp"]["deepshap"]
    assert meta["method"] == "deeplift_rescale" and meta["varm"] == "aeinterp_deepshap" and list(meta["targets"]) == ["z0", "z1", "z2"]
    record = json.loads(meta["record"])
    assert record["extras"]["data"]["matrix"] == "X" and record["params"]["n_background"] == 100 and "torch" in record["library_versions"]
    single = cells_adata(counts)
    shap.to_anndata(single, key="mine")
    assert "aeinterp_mine" in single.varm
    with pytest.raises(DataError, match="computed on 160 cells, but this AnnData has 10"):
        shap.to_anndata(cells_adata(counts[:10]))
    with pytest.raises(DataError, match="backed"):
        shap.to_anndata(anndata.read_h5ad(tmp_path / "out.h5ad", backed="r"))


def test_scanpy_dotplot_of_the_top_genes_per_latent(cells, tmp_path: Path) -> None:  # noqa: ANN001
    sc = pytest.importorskip("scanpy", reason="the scanpy plotting test needs scanpy ([scverse] extra)")
    import matplotlib

    matplotlib.use("Agg")
    counts, net = cells
    adata = cells_adata(counts)
    aeinterp.explain(net, adata, "deepshap", progress=False).to_anndata(adata)
    table = adata.varm["aeinterp_deepshap"]
    markers = {z: table[z].nlargest(3).index.tolist() for z in table.columns}
    plot = sc.pl.dotplot(adata, markers, groupby="cell_type", show=False, return_fig=True)
    plot.savefig(tmp_path / "dotplot.png")
    assert (tmp_path / "dotplot.png").stat().st_size > 1000
    assert all(set(genes) <= set(GENES) for genes in markers.values())


def test_recipe_on_h5ad_reads_the_named_matrix_and_writes_results_h5ad(cells, tmp_path: Path) -> None:  # noqa: ANN001
    counts, _ = cells
    adata = cells_adata(counts)
    adata.raw = adata.copy()
    adata.write_h5ad(tmp_path / "cells.h5ad")
    (tmp_path / "r.yaml").write_text(
        "seed: 0\n"
        "data: {path: cells.h5ad, layer: raw, label: cell_type, split: {column: set, explain: [test]}}\n"
        "model: {builtin: mlp, latent_dim: 3, options: {hidden: [8]}, train: {epochs: 3}}\n"
        "explainers: [{name: deepshap, params: {n_background: 20}}]\n"
        "report: {html: false, plots: false}\n"
        "output: out\n"
    )
    outcome = aeinterp.Runner(quiet=True).run_file(tmp_path / "r.yaml")
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["data"]["matrix"] == "raw.X" and "sparse" in doc["data"]["storage"]
    res = anndata.read_h5ad(tmp_path / "out" / "results.h5ad")
    assert res.X is None and list(res.obs_names) == list(adata.obs_names) and list(res.var_names) == GENES
    np.testing.assert_allclose(res.varm["aeinterp_deepshap"].to_numpy().T, outcome.explanations["deepshap"].importance)
    values = res.obsm["aeinterp_deepshap_values"]
    assert np.isfinite(values[::4]).all() and np.isnan(values[1::4]).all()  # explained cells are obs['set'] == 'test'


def test_lazy_rows_cache_serves_few_columns_of_repeated_rows(monkeypatch) -> None:  # noqa: ANN001
    """Permutation reads one gene of random donor rows per group: rows are read once, then served from the cache."""
    import aeinterp.io.rows as rows_module

    rng = np.random.default_rng(1)
    dense = ((rng.random((300, 50)) < 0.2) * rng.random((300, 50))).astype(np.float32)
    view = LazyRows(sp.csr_matrix(dense)).rows_view(np.arange(10, 300))
    reference = dense[10:300]
    for limit in (rows_module.CACHE_BYTES, 50 * 4 * 20, 50 * 4 * 3):  # everything fits / the cache starts over / rows do not fit
        monkeypatch.setattr(rows_module, "CACHE_BYTES", limit)
        for _ in range(40):
            r, c = rng.integers(0, 290, size=7), rng.integers(0, 50, size=2)
            np.testing.assert_array_equal(view[r[:, None], c[None, :]], reference[r[:, None], c[None, :]])
    monkeypatch.setattr(rows_module, "CACHE_BYTES", 2**20)
    fresh = LazyRows(sp.csr_matrix(dense))
    fresh[np.array([[3], [5]]), np.array([[1]])]

    def no_second_read(rows):  # noqa: ANN001, ANN202
        raise AssertionError(f"rows {rows} read again")

    monkeypatch.setattr(fresh, "read", no_second_read)  # cached rows are not read from the source again
    np.testing.assert_array_equal(fresh[np.array([[5], [3]]), np.array([[2, 4]])], dense[[[5], [3]], [[2, 4]]])
