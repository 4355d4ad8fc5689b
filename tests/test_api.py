"""The one-call Python API: a user's own nn.Module and arrays, exactly the rows they pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import aeinterp
from aeinterp import AeinterpError, DataError, RecipeError


class AE(nn.Module):
    def __init__(self, n: int = 6, k: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n, 10), nn.ReLU(), nn.Linear(10, k))
        self.decoder = nn.Sequential(nn.Linear(k, 10), nn.ReLU(), nn.Linear(10, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class TupleVAE(nn.Module):
    """encode returns (mu, logvar), as many user VAEs do."""

    def __init__(self, n: int = 6, k: int = 2) -> None:
        super().__init__()
        self.body = nn.Linear(n, 2 * k)
        self.dec = nn.Linear(k, n)
        self.k = k

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h[:, : self.k], h[:, self.k :]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


@pytest.fixture()
def net() -> AE:
    torch.manual_seed(0)
    return AE()


@pytest.fixture()
def xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((30, 6)).astype(np.float32), rng.standard_normal((12, 6)).astype(np.float32)


def test_deepshap_explains_exactly_the_rows_given_against_the_background(net: AE, xy) -> None:  # noqa: ANN001
    x, bg = xy
    e = aeinterp.explain(net, x, "deepshap", background=bg, progress=False)
    assert e.explainer == "deepshap" and e.local.shape == (30, 3, 6) and e.importance.shape == (3, 6)
    with torch.no_grad():
        z = net.encoder(torch.as_tensor(x)).numpy()
        z_bg = net.encoder(torch.as_tensor(bg)).numpy().mean(0)
    # DeepSHAP's additivity: attributions of row i sum to z(x_i) - E_background[z]; row order is X's
    np.testing.assert_allclose(e.local.sum(axis=2), z - z_bg, atol=2e-5)
    assert e.extras["method"] == "deeplift_rescale"


def test_background_defaults_to_x_itself(net: AE, xy) -> None:  # noqa: ANN001
    x, _ = xy
    e = aeinterp.explain(net, x, "deepshap", progress=False)
    with torch.no_grad():
        z = net.encoder(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(e.local.sum(axis=2), z - z.mean(0), atol=2e-5)


def test_dataframe_gives_feature_names_and_tensor_input_equals_numpy(net: AE, xy) -> None:  # noqa: ANN001
    pd = pytest.importorskip("pandas")
    x, _ = xy
    cols = [f"gene_{i}" for i in range(6)]
    a = aeinterp.explain(net, pd.DataFrame(x, columns=cols), "integrated_gradients", progress=False)
    b = aeinterp.explain(net, torch.as_tensor(x), "integrated_gradients", progress=False)
    assert a.feature_names == cols and b.feature_names == [f"x{i}" for i in range(6)]
    np.testing.assert_array_equal(a.importance, b.importance)
    frame = a.to_pandas()
    assert list(frame.columns) == cols and list(frame.index) == ["z0", "z1", "z2"]
    np.testing.assert_array_equal(frame.to_numpy(), a.importance)
    long = a.to_pandas("local")
    assert len(long) == 30 * 3 * 6 and set(long.columns) == {"sample", "target", "feature", "attribution"}
    row = long[(long["sample"] == 4) & (long["target"] == "z1") & (long["feature"] == "gene_2")]
    assert row["attribution"].item() == pytest.approx(float(a.local[4, 1, 2]))


def test_to_xarray_has_named_dims(net: AE, xy) -> None:  # noqa: ANN001
    pytest.importorskip("xarray")
    e = aeinterp.explain(net, xy[0], "deepshap", progress=False)
    ds = e.to_xarray()
    assert ds["local"].dims == ("sample", "target", "feature") and ds["importance"].shape == (3, 6)
    assert ds.attrs["method"] == "deeplift_rescale"


def test_params_targets_and_vae_tuple_outputs(xy) -> None:  # noqa: ANN001
    torch.manual_seed(1)
    vae = TupleVAE()
    x, _ = xy
    e = aeinterp.explain(vae, x, "permutation", repeats=3, target="reconstruction_error", progress=False)
    assert e.target == "reconstruction_error" and e.importance.shape == (1, 6) and e.params["repeats"] == 3
    lat = aeinterp.explain(vae, x, "zero_ablation", targets=["latent"], progress=False)
    assert lat.target_names == ["z0", "z1"]
    # the code is the mean: only the first two outputs of body; its weight rows give the exact linear dependence
    w = vae.body.weight.detach().numpy()[:2]
    jac = aeinterp.explain(vae, x, "jacobian", progress=False)
    np.testing.assert_allclose(jac.importance, np.abs(w), rtol=1e-5)


def test_torchscript_module_is_accepted(net: AE, xy) -> None:  # noqa: ANN001
    class Scriptable(nn.Module):
        def __init__(self, inner: AE) -> None:
            super().__init__()
            self.encoder, self.decoder = inner.encoder, inner.decoder

        @torch.jit.export
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x)

        @torch.jit.export
        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.decoder(z)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decode(self.encode(x))

    scripted = torch.jit.script(Scriptable(net))
    x = xy[0]
    a = aeinterp.explain(scripted, x, "permutation", progress=False)
    b = aeinterp.explain(net, x, "permutation", progress=False)
    np.testing.assert_allclose(a.importance, b.importance, rtol=1e-5, atol=1e-7)  # float32 paths (scripted: no first-layer update)


def test_errors_are_clear(net: AE, xy) -> None:  # noqa: ANN001
    x, _ = xy
    with pytest.raises(RecipeError, match="did you mean 'permutation'"):
        aeinterp.explain(net, x, "permutaton")
    with pytest.raises(RecipeError, match=r"params\.repeat: unknown key 'repeat'; did you mean 'repeats'"):
        aeinterp.explain(net, x, "permutation", repeat=2)
    with pytest.raises(RecipeError, match="repeats"):
        aeinterp.explain(net, x, "permutation", repeats=0)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="row 3"):
        aeinterp.explain(net, bad, "permutation")
    with pytest.raises(DataError, match="background samples have shape"):
        aeinterp.explain(net, x, "permutation", background=x[:, :4])
    with pytest.raises(aeinterp.ModelError, match="cannot encode"):
        aeinterp.explain(net, x[:, :5], "permutation")
    with pytest.raises(AeinterpError, match="explain_all"):
        aeinterp.explain(net, x, "permutation", targets=["latent", "reconstruction"])
    with pytest.raises(AeinterpError, match="nn.Module"):
        aeinterp.explain(object(), x, "permutation")


def test_explain_all_gives_agreement_and_the_cli_report(net: AE, xy, tmp_path: Path) -> None:  # noqa: ANN001
    x, bg = xy
    res = aeinterp.explain_all(
        net,
        x,
        [
            "deepshap",
            ("permutation", {"repeats": 2}),
            {"name": "zero_ablation", "alias": "zero", "targets": ["latent", "reconstruction_error"]},
        ],
        background=bg,
        progress=False,
    )
    assert list(res) == ["deepshap", "permutation", "zero-latent", "zero-reconstruction_error"]
    assert not res.failures
    pairs = {(a.a, a.b) for a in res.agreement}
    assert ("deepshap", "permutation") in pairs and all(a.target == "latent" for a in res.agreement)
    written = res.report(tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["status"] == "complete" and [e["alias"] for e in doc["explainers"]] == list(res)
    assert (tmp_path / "report.html") in written and (tmp_path / "deepshap.npz").exists()
    back = aeinterp.run.results.load_results(tmp_path)
    np.testing.assert_array_equal(back.explanations["deepshap"].importance, res["deepshap"].importance)


def test_explain_all_keeps_other_results_when_one_step_fails(net: AE, xy) -> None:  # noqa: ANN001
    res = aeinterp.explain_all(net, xy[0], ["permutation", {"name": "invariance", "targets": ["prediction"]}], progress=False)
    assert list(res) == ["permutation"]
    assert res.failures[0]["name"] == "invariance" and "supervised" in res.failures[0]["error"]
    with pytest.raises(RecipeError, match="did you mean"):
        aeinterp.explain_all(net, xy[0], ["permutaton", "deepshap"])


def test_plugin_author_form_still_runs_the_explainer_class(net: AE, xy) -> None:  # noqa: ANN001
    from aeinterp.api import as_dataset, as_model

    data = as_dataset(xy[0])
    model = as_model(net, data)
    cls = aeinterp.Runner(quiet=True).registry["permutation"].cls
    a = aeinterp.explain(cls, model, data, params={"repeats": 2})
    b = aeinterp.run_explainer(cls, model, data, params={"repeats": 2})
    np.testing.assert_array_equal(a.importance, b.importance)


def test_device_and_executor_parameters(net: AE, xy) -> None:  # noqa: ANN001
    x, _ = xy
    a = aeinterp.explain(net, x, "jacobian", device="cpu", executor="local", progress=False)
    b = aeinterp.explain(net, x, "jacobian", progress=False)
    np.testing.assert_array_equal(a.importance, b.importance)
    with pytest.raises(AeinterpError):
        aeinterp.explain(net, x, "jacobian", device="tpu", progress=False)
