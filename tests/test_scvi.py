"""scvi-tools models passed as they are (issue #25): the adapter's code is get_latent_representation(),
per-cell library and batch travel with their cells, latents never touch the decoder, and mistakes
get clear errors. Models are trained for a few epochs on scanpy's pbmc68k_reduced (700 cells)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import aeinterp
from aeinterp.errors import DataError
from aeinterp.io.inputs import adapter_dataset

scvi = pytest.importorskip("scvi", reason="the scvi-tools adapter tests need scvi-tools (pip install -c constraints.txt scvi-tools)")
sc = pytest.importorskip("scanpy", reason="the scvi-tools tests train on scanpy's bundled pbmc68k_reduced")

from aeinterp.models.scvi import COVARIATE_NAMES, ScviAutoencoder, is_scvi_model  # noqa: E402


def _pbmc() -> object:
    """pbmc68k_reduced with integer pseudo-counts (rounded expm1 of its log-normalised raw) as layer `counts`."""
    adata = sc.datasets.pbmc68k_reduced()
    adata.layers["counts"] = np.rint(np.expm1(adata.raw.X.toarray())).astype(np.float32)
    import scipy.sparse as sp

    adata.layers["counts"] = sp.csr_matrix(adata.layers["counts"])
    return adata


def _train(cls: type, adata: object, **kw: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scvi.settings.seed = 0
        cls.setup_anndata(adata, layer="counts", batch_key="phase")  # 3 batches: G1, S, G2M
        model = cls(adata, n_latent=6, **kw)
        model.train(max_epochs=4, accelerator="cpu", enable_progress_bar=False, batch_size=256)
    return model


@pytest.fixture(scope="module")
def trained() -> tuple[object, object]:
    adata = _pbmc()
    return _train(scvi.model.SCVI, adata, n_hidden=32), adata


def test_the_code_is_get_latent_representation(trained) -> None:  # noqa: ANN001
    model, adata = trained
    assert is_scvi_model(model) and not is_scvi_model(model.module)
    adapter = ScviAutoencoder(model)
    data = adapter_dataset(adapter, adata)
    assert data.feature_names[-2:] == list(COVARIATE_NAMES) and len(data.groups) == adata.n_vars  # covariates are not features
    with torch.no_grad():
        z = adapter.encode(torch.as_tensor(np.asarray(data.x_explain))).numpy()
    np.testing.assert_allclose(z, model.get_latent_representation(adata), rtol=1e-5, atol=1e-5)
    linear = _train(scvi.model.LinearSCVI, adata.copy())
    lin = ScviAutoencoder(linear)
    with torch.no_grad():
        z_lin = lin.encode(torch.as_tensor(np.asarray(adapter_dataset(lin, adata).x))).numpy()
    np.testing.assert_allclose(z_lin, linear.get_latent_representation(adata), rtol=1e-5, atol=1e-5)


def test_each_cell_keeps_its_library_and_batch_through_subsets(trained) -> None:  # noqa: ANN001
    model, adata = trained
    adapter = ScviAutoencoder(model)
    data = adapter_dataset(adapter, adata)
    rows = np.array([611, 3, 250, 3])  # unsorted, repeated: as an explainer's draw might be
    x = torch.as_tensor(data.x_explain[rows])
    counts = adata.layers["counts"][rows].toarray()
    np.testing.assert_allclose(x[:, -2].numpy(), np.log(counts.sum(axis=1)), rtol=1e-6)
    codes = adata.obs["phase"].cat.codes.to_numpy()  # scvi-tools registers the batch as the category code
    np.testing.assert_array_equal(x[:, -1].numpy(), codes[rows])
    with torch.no_grad():
        rate = adapter.reconstruct(x)[:, : adata.n_vars].numpy()
        module = model.module
        qz_loc = adapter.encode(x)
        batch = torch.as_tensor(codes[rows, None], dtype=torch.long)
        expected = module.generative(qz_loc, x[:, -2:-1], batch)["px"].mu.numpy()  # the model's own generative pass
    np.testing.assert_allclose(rate, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(rate[1], rate[0])


def test_explain_scvi_model_on_its_anndata(trained) -> None:  # noqa: ANN001
    model, adata = trained
    calls = []
    hook = model.module.decoder.register_forward_hook(lambda *_: calls.append(1))
    model.module.train()  # whatever state the user left: restored after
    try:
        exp = aeinterp.explain(model, adata, "deepshap", progress=False, max_samples=60, n_background=50, labels="bulk_labels")
    finally:
        hook.remove()
    assert model.module.training
    model.module.eval()
    assert calls == []  # latents need the encoder only
    assert exp.importance.shape == (6, adata.n_vars) and exp.feature_names == list(adata.var_names)
    assert exp.extras["data"]["matrix"] == "layers['counts']" and exp.extras["data"]["held_fixed"] == list(COVARIATE_NAMES)
    assert float(np.max(exp.arrays["additivity_max_rel"])) < 1e-3  # exact DeepLIFT rules through log1p / batch-norm / one-hot
    exp.to_anndata(adata, key="scvi_deepshap")
    assert adata.varm["aeinterp_scvi_deepshap"].shape == (adata.n_vars, 6)
    perm = aeinterp.explain(model, adata, "permutation", progress=False, target="reconstruction", repeats=1, max_samples=40)
    assert perm.importance.shape == (adata.n_vars + 2, adata.n_vars)
    assert [t.rstrip("^") for t in perm.target_names[-2:]] == list(COVARIATE_NAMES)  # passed through: held fixed, so no gene moves them
    np.testing.assert_array_equal(perm.importance[-2:], 0.0)
    assert perm.importance[:-2].max() > 0


def test_scvi_mistakes_get_clear_errors(trained) -> None:  # noqa: ANN001
    model, adata = trained
    with pytest.raises(DataError, match="set up on layer 'counts'; layer='raw'"):
        aeinterp.explain(model, adata, "deepshap", progress=False, layer="raw")
    with pytest.raises(DataError, match="explains an AnnData"):
        aeinterp.explain(model, np.zeros((5, adata.n_vars)), "deepshap", progress=False)
    with pytest.raises(DataError, match="does not fit the SCVI model"):
        aeinterp.explain(model, adata[:, :100].copy(), "deepshap", progress=False)
