"""Figure builders: drawn for the data kind, signed per-sample views, nothing dropped silently.

Explanations come from real explainers on the planted model (whose dependencies are known) or are
built by hand where a shape (200 targets, an 8x8 grid) is the point of the test.
"""

from __future__ import annotations

import numpy as np
import pytest
from aeinterp_gradients.explainers import Jacobian
from matplotlib.collections import PathCollection
from matplotlib.image import AxesImage

from aeinterp import Explanation, run_explainer
from aeinterp.errors import AeinterpError
from aeinterp.report.figures import bar_summary, heatmap_figure, image_maps, importance_figure, sequence_maps, target_bars, topk_figure
from aeinterp.report.layout import layout_of
from aeinterp.report.local_figures import beeswarm, dependence, feature_values, waterfall
from aeinterp.testing.planted import planted_autoencoder


def _titles(fig) -> str:  # noqa: ANN001
    parts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    return "\n".join(parts + [ax.get_title() for ax in fig.axes])


def _images(fig) -> list[np.ndarray]:  # noqa: ANN001
    return [np.asarray(im.get_array()) for ax in fig.axes for im in ax.get_images() if isinstance(im, AxesImage)]


@pytest.fixture(scope="module")
def linear_ixg():  # noqa: ANN201
    """Input x gradient of a linear planted encoder: local[n, j, f] = x[n, f] * W[j, f], exactly."""
    planted = planted_autoencoder(n_features=10, linear=True)
    e = run_explainer(Jacobian, planted.model, planted.data, params={"method": "input_x_gradient"})
    return planted, e


def test_beeswarm_points_are_samples_times_features_coloured_by_value(linear_ixg) -> None:  # noqa: ANN001
    planted, e = linear_ixg
    n = e.local.shape[0]
    fig = beeswarm(e, "z0", data=planted.data, max_features=4)
    points = [c for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in points) == n * 4
    # colour = feature value; for a linear encoder the attribution is value x weight, so the colour
    # order is the attribution order (reversed for a negative weight) on every row
    values = feature_values(e, planted.data)
    assert values.shape == (n, 10) and np.allclose(values, planted.data.x_explain)
    checked = 0
    for c in points:
        x = c.get_offsets()[:, 0]
        col = np.asarray(c.get_array())
        inner = (col > 0.0) & (col < 1.0)  # inside the 5-95 % colour range (no clipping)
        if np.ptp(x) == 0:  # an input z0 does not depend on: every attribution is 0
            continue
        assert abs(np.corrcoef(x[inner], col[inner])[0, 1]) > 0.999
        checked += 1
    assert checked == len(planted.dependencies[0])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    planted_z0 = {f"x{i}" for i in planted.dependencies[0]}
    assert set(labels[-len(planted_z0) :]) == planted_z0  # the planted inputs are the top rows
    assert "4 of 10 features" in _titles(fig)


def test_beeswarm_without_values_says_so_and_every_target_panel_is_named(linear_ixg) -> None:  # noqa: ANN001
    _, e = linear_ixg
    fig = beeswarm(e, max_targets=10)
    assert f"all {len(e.target_names)} targets" in _titles(fig)
    assert "no feature values given" in _titles(fig)
    assert {ax.get_title() for ax in fig.axes if ax.get_title()} == set(e.target_names)


def test_waterfall_ends_at_the_sum_of_the_attributions(linear_ixg) -> None:  # noqa: ANN001
    _, e = linear_ixg
    fig = waterfall(e, sample=3, target="z1", top_k=2)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 3  # two largest + "8 other features"
    end = bars[-1].get_x() + bars[-1].get_width()
    assert end == pytest.approx(float(e.local[3, 1].sum()), rel=1e-5, abs=1e-6)
    assert "8 other features" in [t.get_text() for t in ax.get_yticklabels()]
    with pytest.raises(AeinterpError, match="outside"):
        waterfall(e, sample=10_000)


def test_dependence_plots_value_against_attribution(linear_ixg) -> None:  # noqa: ANN001
    planted, e = linear_ixg
    f = planted.dependencies[0][0]
    fig = dependence(e, f"x{f}", "z0", data=planted.data)
    xy = fig.axes[0].collections[0].get_offsets()
    assert np.allclose(xy[:, 0], planted.data.x_explain[:, f])
    assert np.allclose(xy[:, 1], e.local[:, 0, f])
    slope = np.polyfit(xy[:, 0], xy[:, 1], 1)[0]
    assert np.allclose(xy[:, 1], slope * xy[:, 0], atol=1e-5)  # linear: attribution = value x weight
    with pytest.raises(AeinterpError, match="data="):
        dependence(e, f"x{f}", "z0")


def test_plot_namespace_returns_figures(linear_ixg) -> None:  # noqa: ANN001
    planted, e = linear_ixg
    from matplotlib.figure import Figure

    figs = [
        e.plot(),
        e.plot.heatmap(),
        e.plot.bar(),
        e.plot.target("z0"),
        e.plot.beeswarm("z0", X=planted.data.x_explain),
        e.plot.waterfall(sample=0),
        e.plot.dependence("x0", data=planted.data),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    html = e._repr_html_()
    assert "data:image/png;base64," in html and "<table>" in html and "z0" in html


def test_without_local_the_views_of_samples_say_why() -> None:
    e = Explanation(importance=np.ones((2, 3)), feature_names=["a", "b", "c"], target_names=["z0", "z1"], explainer="permutation")
    with pytest.raises(AeinterpError, match="no per-sample attributions"):
        e.plot.beeswarm()


def _grid_explanation(k: int = 6, h: int = 8, w: int = 8, signed: bool = True) -> Explanation:
    rng = np.random.default_rng(0)
    names = [f"px[{i},{j}]" for i in range(h) for j in range(w)]
    local = rng.normal(size=(20, k, h * w)) if signed else None
    imp = np.abs(local).mean(axis=0) if local is not None else rng.random((k, h * w))
    return Explanation(importance=imp, local=local, feature_names=names, target_names=[f"z{j}" for j in range(k)], explainer="deepshap")


def test_image_maps_have_the_image_grid_and_a_diverging_scale() -> None:
    e = _grid_explanation(h=8, w=6)
    fig = importance_figure(e)
    maps = _images(fig)
    assert len(maps) == 6 and all(m.shape == (8, 6) for m in maps)
    assert np.allclose(maps[2], e.local.mean(axis=0)[2].reshape(8, 6))
    im = fig.axes[0].get_images()[0]
    assert im.get_cmap().name == "RdBu_r" and im.norm.vmin == -im.norm.vmax  # signed, centred on 0
    assert "8x6 image" in _titles(fig) and "all 6 targets" in _titles(fig)


def test_image_maps_from_patches_and_data_description() -> None:
    names = [f"patch[{i}:{i + 4},{j}:{j + 4}]" for i in (0, 4) for j in (0, 4)]
    e = Explanation(importance=np.arange(8.0).reshape(2, 4), feature_names=names, target_names=["z0", "z1"])
    maps = _images(image_maps(e))
    assert maps[1].shape == (8, 8) and maps[1][0, 0] == 4.0 and maps[1][7, 7] == 7.0
    # element-level arrays with the sample shape from results.json's data section
    e2 = Explanation(
        importance=np.ones((2, 2)),
        feature_names=["c0", "c1"],
        target_names=["z0", "z1"],
        arrays={"attribution_mean": np.arange(2 * 2 * 5 * 4.0).reshape(2, 2 * 5 * 4)},
    )
    layout = layout_of(e2, {"kind": "image", "sample_shape": [2, 5, 4]})
    maps2 = _images(image_maps(e2, layout))
    assert maps2[0].shape == (5, 4) and maps2[0][0, 0] == pytest.approx((0 + 20) / 2)  # channel mean


def test_sequence_maps_are_feature_by_time() -> None:
    t, f = 12, 3
    names = [f"{n}@t{i}" for i in range(t) for n in ("sine", "cosine", "walk")]
    rng = np.random.default_rng(1)
    local = rng.normal(size=(10, 2, t * f))
    e = Explanation(importance=np.abs(local).mean(0), local=local, feature_names=names, target_names=["z0", "z1"], explainer="jacobian")
    fig = importance_figure(e)
    maps = _images(fig)
    assert len(maps) == 2 and maps[0].shape == (f, t)
    assert np.allclose(maps[1][2], local.mean(0)[1].reshape(t, f)[:, 2])
    assert [x.get_text() for x in fig.axes[0].get_yticklabels()] == ["sine", "cosine", "walk"]
    bars = fig.axes[1].patches
    assert len(bars) == f  # the per-feature bar
    # feature groups over all steps + element maps and the data description
    e2 = Explanation(
        importance=np.ones((2, f)),
        feature_names=["sine", "cosine", "walk"],
        target_names=["z0", "z1"],
        arrays={"jacobian_mean": local.mean(0)},
    )
    fig2 = sequence_maps(e2, data_info={"kind": "sequence", "sample_shape": [t, f]})
    assert _images(fig2)[0].shape == (f, t) and "importance" in [ax.get_title() for ax in fig2.axes]


def test_many_targets_are_ranked_and_counted_never_dropped_silently() -> None:
    rng = np.random.default_rng(2)
    imp = rng.random((200, 30))
    imp[17] *= 50  # the most important target must be among those shown
    e = Explanation(importance=imp, feature_names=[f"f{i}" for i in range(30)], target_names=[f"t{i}" for i in range(200)], explainer="x")
    fig = heatmap_figure(e)
    shown = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(shown) == 40 and "t17" in shown
    assert "top 40 of 200 targets by total importance" in _titles(fig)


def test_wide_data_gets_top_k_per_target_with_the_rest_summed_as_text_not_a_bar() -> None:
    rng = np.random.default_rng(3)
    names = [f"gene_{i:04d}_with_a_long_name" for i in range(200)]
    e = Explanation(importance=rng.random((5, 200)), feature_names=names, target_names=[f"z{j}" for j in range(5)], explainer="permutation")
    fig = importance_figure(e, top_k=7)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"z{j}" for j in range(5)]
    for j, ax in enumerate(panels):
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert len(labels) == 7 and len(ax.patches) == 7  # the rest is no bar: it would squeeze the scale
        rest = np.sort(e.importance[j])[:-7].sum()
        assert [t.get_text() for t in ax.texts] == [f"+ 193 other features, sum {rest:.3g} (not drawn)"]
        assert ax.get_xlim()[1] < 1.5 * e.importance[j].max()
        assert labels[0] == names[int(np.argmax(e.importance[j]))][:27] + "…" or labels[0] == names[int(np.argmax(e.importance[j]))]
    assert "top 7 of 200 features" in _titles(fig)
    assert topk_figure(e, top_k=3, max_targets=2) is not None and "top 2 of 5 targets" in _titles(topk_figure(e, top_k=3, max_targets=2))


def test_one_target_is_drawn_as_bars_with_std_only_where_there_is_spread() -> None:
    imp = np.linspace(1, 0, 30)[None]
    e = Explanation(
        importance=imp,
        std=np.full((1, 30), 0.05),
        feature_names=[f"f{i}" for i in range(30)],
        target_names=["reconstruction_error"],
        target="reconstruction_error",
        explainer="permutation",
        extras={"unit": "mean increase of reconstruction error"},
    )
    fig = importance_figure(e)
    ax = fig.axes[0]
    assert len(ax.patches) == 20 and not _images(fig)  # top 20 (the rest as a line of text), not a one-row heatmap
    assert [t.get_text() for t in ax.texts] == [f"+ 10 other features, sum {imp[0, 20:].sum():.3g} (not drawn)"]
    assert "top 20 of 30 features" in _titles(fig) and "mean increase of reconstruction error" in _titles(fig)
    assert "± std" in ax.get_xlabel()
    flat = e.replace(std=np.zeros((1, 30)))
    assert "±" not in target_bars(flat, 0).axes[0].get_xlabel()


def test_bar_summary_is_the_model_level_ranking() -> None:
    imp = np.array([[0.0, 1.0, 0.2], [0.0, 3.0, 0.4]])
    e = Explanation(
        importance=imp, std=np.full((2, 3), 0.1), feature_names=["a", "b", "c"], target_names=["z0", "z1"], explainer="permutation"
    )
    ax = bar_summary(e).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["b", "c", "a"]
    assert [p.get_width() for p in ax.patches] == pytest.approx([2.0, 0.3, 0.0])
    assert "over 2 targets" in ax.get_xlabel() and "std" in ax.get_xlabel()


def test_unexplained_targets_are_left_out_and_said_to_be() -> None:
    imp = np.zeros((30, 4))
    imp[:2] = [[1, 0.5, 0, 0], [0, 1, 0.2, 0]]
    e = Explanation(
        importance=imp,
        feature_names=list("abcd"),
        target_names=[f"z{i}" for i in range(30)],
        explainer="symbolic_regression",
        extras={"dims": [0, 1]},
    )
    fig = heatmap_figure(e)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["z0", "z1"]
    assert "28 targets not explained by this step" in _titles(fig)


def test_plot_namespace_imports_matplotlib_only_when_used() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, aeinterp\n"
        "e = aeinterp.Explanation(importance=np.ones((1, 2)), feature_names=['a', 'b'], target_names=['z0'])\n"
        "assert 'matplotlib' not in sys.modules, 'import aeinterp pulled in matplotlib'\n"
        "fig = e.plot.target('z0')\n"
        "assert 'matplotlib' in sys.modules and type(fig).__name__ == 'Figure'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"MPLBACKEND": "Agg", "PATH": ""})
    assert done.returncode == 0, done.stderr
