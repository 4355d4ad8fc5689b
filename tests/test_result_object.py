"""The result object a Python user holds: row labels, selection by name, save/load, short reprs, and
figures that take names and labels (and draw what they should)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage
from matplotlib.text import Text
from torch import nn

import aeinterp
from aeinterp.errors import AeinterpError
from aeinterp.explanation import Explanation

pd = pytest.importorskip("pandas")

N_FEATURES, N_LATENT = 6, 3
W = np.array([[1.0, -2.0, 0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0, -1.0, 0.0], [0.2, 0.0, 0.0, 0.0, 0.0, 4.0]])


class LinearAE(nn.Module):
    """A hand-built linear encoder z = W x: its exact attributions are W * (x - mean(background))."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(N_FEATURES, N_LATENT, bias=False, dtype=torch.float64)
        self.decoder = nn.Linear(N_LATENT, N_FEATURES, dtype=torch.float64)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.as_tensor(W))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, N_FEATURES))
    return pd.DataFrame(x, columns=[f"g{i}" for i in range(N_FEATURES)], index=[f"cell_{i}" for i in range(100, 180)])


@pytest.fixture(scope="module")
def exp(frame: pd.DataFrame) -> Explanation:
    return aeinterp.explain(LinearAE(), frame.iloc[:40], "deepshap", background=frame.iloc[40:], progress=False)


def test_row_labels_come_from_the_dataframe_index_and_name_the_local_rows(exp: Explanation, frame: pd.DataFrame) -> None:
    assert exp.sample_names == [f"cell_{i}" for i in range(100, 140)]
    local = exp.to_pandas("local")
    assert local.index.name == "row"
    row = local.loc["cell_110"]
    expected = W * (frame.loc["cell_110"].to_numpy() - frame.iloc[40:].to_numpy().mean(axis=0))  # exact for a linear encoder
    got = row.pivot(index="target", columns="feature", values="attribution").loc[["z0", "z1", "z2"], list(frame.columns)].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert list(exp.to_xarray()["local"].coords["sample"].values[:2]) == ["cell_100", "cell_101"]


def test_default_range_index_and_numpy_give_no_labels_and_explicit_names_win(frame: pd.DataFrame) -> None:
    plain = frame.reset_index(drop=True)
    e = aeinterp.explain(LinearAE(), plain.iloc[:10], "deepshap", background=plain.iloc[40:], progress=False)
    assert e.sample_names is None
    named = aeinterp.explain(
        LinearAE(),
        plain.iloc[:10].to_numpy(),
        "deepshap",
        background=plain.iloc[40:].to_numpy(),
        progress=False,
        sample_names=list("abcdefghij"),
    )
    assert named.sample_names == list("abcdefghij")
    with pytest.raises(AeinterpError, match="3 labels for 10 rows"):
        aeinterp.explain(LinearAE(), plain.iloc[:10], "deepshap", progress=False, sample_names=["a", "b", "c"])


def test_sel_and_indexing_by_target_name_row_label_and_feature(exp: Explanation) -> None:
    z1 = exp.sel(target="z1")
    assert z1.target_names == ["z1"] and z1.importance.shape == (1, N_FEATURES)
    np.testing.assert_array_equal(z1.importance[0], exp.importance[1])
    np.testing.assert_array_equal(z1.local[:, 0], exp.local[:, 1])
    assert float(z1.arrays["expected_value"][0]) == float(exp.arrays["expected_value"][1])
    same = exp[:, "z1"]
    np.testing.assert_array_equal(same.local, z1.local)
    one = exp["cell_110"]
    assert one.sample_names == ["cell_110"] and one.local.shape == (1, N_LATENT, N_FEATURES)
    np.testing.assert_array_equal(one.local[0], exp.local[10])
    assert list(one.arrays["sample_index"]) == [10]
    cut = exp.sel(sample=slice("cell_105", "cell_107"), feature=["g2", "g0"])  # label slices include both ends
    assert cut.sample_names == ["cell_105", "cell_106", "cell_107"] and cut.feature_names == ["g2", "g0"]
    np.testing.assert_array_equal(cut.local[:, :, 0], exp.local[5:8, :, 2])
    np.testing.assert_array_equal(exp[:, :, "g3"].importance[:, 0], exp.importance[:, 3])
    with pytest.raises(AeinterpError, match="unknown target 'z9'.*z0, z1, z2"):
        exp.sel(target="z9")
    with pytest.raises(AeinterpError, match="unknown sample 'cell_999'"):
        exp.sel(sample="cell_999")


def test_selection_on_a_result_without_local_takes_targets_only(frame: pd.DataFrame) -> None:
    perm = aeinterp.explain(
        LinearAE(), frame.iloc[:40], "permutation", background=frame.iloc[40:], progress=False, repeats=2, summary="rms_change"
    )  # rms_change: a std to select
    assert perm.local is None and perm.sample_names is None
    np.testing.assert_array_equal(perm[:, ["z2", "z0"]].importance, perm.importance[[2, 0]])
    np.testing.assert_array_equal(perm[:, "z2"].std, perm.std[[2]])
    with pytest.raises(AeinterpError, match="only ':'"):
        perm["cell_110"]


def test_reprs_are_short_and_never_hold_arrays(exp: Explanation) -> None:
    text = repr(exp)
    assert text.startswith("Explanation(deepshap on latent: 3 targets x 6 features, local (40, 3, 6)")
    assert "rows 'cell_100'..'cell_139'" in text and "[[" not in text and "array(" not in text
    wide = Explanation(
        importance=np.ones((500, 2000)),
        feature_names=[f"feature_{'x' * 80}_{i}" for i in range(2000)],
        target_names=[f"t{'y' * 90}{i}" for i in range(500)],
    )
    assert len(repr(wide)) < 500


def test_save_and_load_round_trip_without_pickle(exp: Explanation, tmp_path: Path) -> None:
    folder = exp.save(tmp_path / "saved")
    assert sorted(p.name for p in folder.iterdir()) == ["explanation.json", "explanation.npz"]
    with np.load(folder / "explanation.npz", allow_pickle=False) as npz:  # plain numeric members only
        assert {"importance", "local", "expected_value", "sample_index"} <= set(npz.files)
    back = aeinterp.load(folder)
    assert back.explainer == exp.explainer and back.target_names == exp.target_names and back.feature_names == exp.feature_names
    assert back.sample_names == exp.sample_names and back.extras == exp.extras and back.params == exp.params
    np.testing.assert_array_equal(back.importance, exp.importance)
    np.testing.assert_array_equal(np.asarray(back.local), exp.local)
    assert set(back.arrays) == set(exp.arrays)
    for key in exp.arrays:
        np.testing.assert_array_equal(np.asarray(back.arrays[key]), exp.arrays[key])
    assert back.sel(sample="cell_110").local.shape == (1, 3, 6)
    with pytest.raises(AeinterpError, match="neither"):
        aeinterp.load(tmp_path)


def test_saving_a_memory_mapped_result_copies_its_local_file(tmp_path: Path) -> None:
    source = tmp_path / "big.local.npy"
    np.save(source, np.arange(24, dtype=np.float64).reshape(2, 3, 4))
    e = Explanation(
        importance=np.ones((3, 4)),
        feature_names=list("abcd"),
        target_names=["z0", "z1", "z2"],
        local=np.load(source, mmap_mode="r"),
        sample_names=["r1", "r2"],
    )
    folder = e.save(tmp_path / "out")
    assert source.exists()  # the user's file stays where it was
    np.testing.assert_array_equal(np.asarray(aeinterp.load(folder).local), np.load(source))


def test_explain_all_results_save_load_and_repr(frame: pd.DataFrame, tmp_path: Path) -> None:
    both = aeinterp.explain_all(
        LinearAE(), frame.iloc[:40], ["deepshap", ("permutation", {"repeats": 2})], background=frame.iloc[40:], progress=False
    )
    text = repr(both)
    assert text.splitlines()[0] == "Explanations(2 results, 0 failed)" and len(text) < 600
    both.save(tmp_path / "run")
    run = aeinterp.load(tmp_path / "run")
    assert repr(run).startswith("RunResults(") and len(repr(run)) < 600
    assert run.explanations["deepshap"].sample_names == both["deepshap"].sample_names


def _texts(fig) -> list[Text]:  # noqa: ANN001
    return [t for t in fig.findobj(Text) if t.get_text().strip()]


def test_plots_take_target_names_and_row_labels(exp: Explanation, frame: pd.DataFrame) -> None:
    fig = exp.plot.bar("z0")
    assert "z0" in fig.axes[0].get_title()
    fig = exp.plot.waterfall(sample="cell_110", data=frame.iloc[:40])
    title = fig._suptitle.get_text()
    assert "sample cell_110, z0" in title and "mean |attribution|" not in title and "signed attribution" in title
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    value = frame.loc["cell_110", "g5"]
    assert f"g5 = {value:.3g}" in labels
    assert exp.plot.beeswarm("z2", data=frame.iloc[:40]).axes[0].get_title() == "z2"
    assert "mean |attribution|" not in exp.plot.beeswarm("z2")._suptitle.get_text()
    assert "mean |attribution|" not in exp.plot.dependence("g1", data=frame.iloc[:40])._suptitle.get_text()


def test_waterfall_keeps_every_bar_and_value_label_inside_the_axes(exp: Explanation) -> None:
    fig = exp.plot.waterfall(sample=3, target="z1")
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    for bar in ax.patches:
        assert lo <= min(bar.get_x(), bar.get_x() + bar.get_width()) and max(bar.get_x(), bar.get_x() + bar.get_width()) <= hi
    box = ax.get_window_extent()
    for t in ax.texts:  # value labels: inside the axes, so never over the feature names on the left
        ext = t.get_window_extent()
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1
    assert min(t.get_fontsize() for t in _texts(fig)) >= 8


def test_bar_does_not_draw_the_rest_as_a_bar_that_squeezes_the_scale() -> None:
    values = np.r_[np.linspace(1.0, 0.5, 5), np.full(95, 0.2)]  # the 95 others sum to 19, 19x the top feature
    e = Explanation(importance=values[None, :].repeat(2, axis=0), feature_names=[f"f{i}" for i in range(100)], target_names=["z0", "z1"])
    fig = e.plot.bar(top_k=5)
    ax = fig.axes[0]
    assert len(ax.patches) == 5 and ax.get_xlim()[1] < 1.5  # the top feature spans most of the axis
    assert any("95 other features, sum 19" in t.get_text() for t in ax.texts)
    grid = e.plot.importance(top_k=5)
    assert all(len(a.patches) <= 5 for a in grid.axes)


def test_image_overlay_is_transparent_where_the_attribution_is_small_and_per_sample_panels_show_each_image() -> None:
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (12, 1, 6, 6))
    local = np.zeros((12, 2, 36))
    local[:, 0, 7] = 1.0  # one pixel matters for z0, in every sample
    names = [f"px[{i},{j}]" for i in range(6) for j in range(6)]
    e = Explanation(
        importance=np.abs(local).mean(axis=0),
        feature_names=names,
        target_names=["z0", "z1"],
        local=local,
        sample_names=[f"img{i}" for i in range(12)],
    )
    fig = e.plot.image(over=images[0])
    ax = fig.axes[0]
    layers = [im for im in ax.get_children() if isinstance(im, AxesImage)]
    assert len(layers) == 2
    rgba = np.asarray(layers[1].get_array())
    assert rgba.shape == (6, 6, 4) and rgba[1, 1, 3] > 0.8 and rgba[0, 0, 3] < 0.05  # opaque at the pixel that matters only
    grid = e.plot.image(samples=["img3", "img5"], data=images, target=["z0", "z1"])
    panels = [a for a in grid.axes if any(isinstance(c, AxesImage) for c in a.get_children())]
    assert len(panels) == 4  # 2 targets x 2 samples
    first = [c for c in panels[1].get_children() if isinstance(c, AxesImage)][0]
    np.testing.assert_allclose(np.asarray(first.get_array()), images[5, 0])  # row z0, column img5: img5's own image
    assert panels[0].get_title() == "img3" and panels[0].get_ylabel() == "z0"


def test_notebook_html_offers_only_the_figures_that_draw(exp: Explanation, frame: pd.DataFrame) -> None:
    from aeinterp.report.notebook import available_views

    assert ".plot.beeswarm(data=X)" in available_views(exp) and not any("image" in v for v in available_views(exp))
    perm = aeinterp.explain(LinearAE(), frame.iloc[:20], "permutation", progress=False)
    views = available_views(perm)
    assert not any(v.startswith((".plot.beeswarm", ".plot.waterfall", ".plot.image", ".plot.sequence", ".plot.dependence")) for v in views)
    html = perm._repr_html_()
    assert ".beeswarm" not in html and ".image(" not in html and "<img" in html


def test_the_mutual_information_gaps_figure_keeps_its_title_and_legend_clear_of_the_bars(frame: pd.DataFrame) -> None:
    from aeinterp_dependence.explainers import MutualInformation

    e = aeinterp.explain(LinearAE(), frame, "mutual_information", progress=False, backend="torch")
    fig = MutualInformation.figures(e)["gaps"]
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_legend() is None and len(fig.legends) == 1  # the legend is the figure's, outside the axes
    axes_box, fig_box = ax.get_window_extent(), fig.bbox
    for artist in (fig.legends[0], fig._suptitle):
        box = artist.get_window_extent()
        assert not box.overlaps(axes_box)
        assert fig_box.x0 <= box.x0 and box.x1 <= fig_box.x1 and box.y1 <= fig_box.y1  # not cut


def test_every_overview_takes_target_names(exp: Explanation) -> None:
    for fig in (exp.plot("z1"), exp.plot.importance(["z0", "z2"]), exp.plot.heatmap(["z0", "z2"])):
        titles = " ".join([a.get_title() for a in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""])
        assert "z1" in titles or ("2 targets" in titles and "3 targets" not in titles)


def test_the_report_of_an_image_explanation_draws_each_sample_over_its_own_image(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    images = (load_digits().images / 16.0).astype("float32")
    net = nn.Module()
    net.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 3))
    net.decoder = nn.Sequential(nn.Linear(3, 64), nn.Unflatten(1, (1, 8, 8)))
    results = aeinterp.explain_all(net, images[:12], ["deepshap"], kind="image", background=images[100:140], progress=False)
    results.report(tmp_path)
    assert (tmp_path / "deepshap.samples.png").exists()
    assert "deepshap.samples.png" in (tmp_path / "report.html").read_text()
