"""Figures of the ``invariance`` explainer, drawn from an Explanation's arrays and extras only.

Images: ``sample<i>`` — for each of the first ``n_figures`` explained samples,
the original and its invariant samples (top row, with the re-encoded
prediction) above the integrated-gradients map of the predicted class on each
(bottom row); ``classes`` — each class's stable attribution as an image;
``map`` — per pixel, the change nuisance sampling causes, the
stable attribution and the resulting status. Tabular: ``table`` — per
feature, the change under nuisance sampling and the stable attribution, as
bars coloured by status (varies freely / stays fixed / drives the decision).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aeinterp.explanation import Explanation

from .maps import STATUS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["invariance_figures"]

MAX_COLUMNS = 8  # invariant samples shown per grid
MAX_ROWS = 40  # features shown in the tabular table
MAX_CLASS_PANELS = 20  # per-class importance images
STATUS_COLORS = ("#9e9e9e", "#2e7d32", "#c62828", "#f9a825")  # fixed, free, decision, not informative


def invariance_figures(explanation: Explanation) -> dict[str, Figure]:
    """All figures that the explanation's arrays allow (none when they are missing)."""
    arrays, extras = explanation.arrays, explanation.extras
    needed = ("x_explained", "x_invariant", "attribution_predicted", "status", "nuisance_change")
    if any(key not in arrays for key in needed):
        return {}
    if extras.get("kind") == "image":
        figures = {f"sample{i}": _sample_grid(explanation, i) for i in range(int(extras.get("n_figures", 0)))}
        if "element_group" in arrays:
            figures["map"] = _image_map(explanation)
            if len(explanation.target_names) <= MAX_CLASS_PANELS:
                figures["classes"] = _class_maps(explanation)
        return figures
    return {"table": _table(explanation)}


def _to_image(flat: np.ndarray, shape: list[int]) -> np.ndarray:
    """A ``(H, W)`` or ``(H, W, 3)`` array to show; channels other than 1 or 3 are averaged."""
    img = np.asarray(flat, dtype=np.float64).reshape(shape)
    c = img.shape[0]
    if c == 3:
        img = np.moveaxis(img, 0, -1)
        lo, hi = img.min(), img.max()
        return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return img.mean(axis=0) if c != 1 else img[0]


def _columns(k: int) -> np.ndarray:
    return np.unique(np.linspace(0, k - 1, min(k, MAX_COLUMNS)).round().astype(int))


def _sample_grid(explanation: Explanation, i: int) -> Figure:
    from matplotlib.figure import Figure

    arrays, extras = explanation.arrays, explanation.extras
    shape = list(extras["sample_shape"])
    classes = explanation.target_names
    original = arrays["x_explained"][i].reshape(-1)
    invariant = arrays["x_invariant"][i].reshape(arrays["x_invariant"].shape[1], -1)
    attribution = arrays["attribution_predicted"][i]  # (1 + K, D)
    pred = int(arrays["predictions"][i])
    pred_inv = arrays["predictions_invariant"][i]
    cols = _columns(invariant.shape[0])
    n = 1 + len(cols)
    images = [original] + [invariant[j] for j in cols]
    maps = [attribution[0]] + [attribution[1 + j] for j in cols]
    lo, hi = float(np.min(_to_image(original, shape))), float(np.max(_to_image(original, shape)))  # the data's range
    scale = max(
        float(np.abs(np.stack([_to_image(m, [1, *shape[1:]]) if shape[0] != 3 else _to_image(m, shape) for m in maps])).max()), 1e-12
    )
    fig = Figure(figsize=(1.45 * n + 0.9, 3.6), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for col, (img, amap) in enumerate(zip(images, maps)):
        top, bottom = axes[0, col], axes[1, col]
        picture = _to_image(img, shape)
        top.imshow(picture, cmap="gray_r" if picture.ndim == 2 else None, vmin=lo, vmax=hi, interpolation="nearest")
        attr = np.asarray(amap, dtype=np.float64).reshape(shape).sum(axis=0)
        im = bottom.imshow(attr, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
        if col == 0:
            top.set_title(f"original\npred {classes[pred]}", fontsize=9)
        else:
            p = int(pred_inv[cols[col - 1]])
            kept = p == pred
            top.set_title(
                f"draw {cols[col - 1] + 1}\npred {classes[p]}" + ("" if kept else " (changed)"),
                fontsize=9,
                color="black" if kept else "#c62828",
            )
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel(f"IG of '{classes[pred]}'", fontsize=9)
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.9, label="attribution")
    kept = float(np.mean(pred_inv == pred))
    fig.suptitle(
        f"sample {i}: task code held, nuisance code redrawn ({extras.get('sampling', '')}); prediction kept in {kept:.0%} of {len(pred_inv)} draws",
        fontsize=10,
    )
    return fig


def _pixels(explanation: Explanation, values: np.ndarray) -> np.ndarray:
    """Group values painted onto the image grid (max over channels)."""
    owner = explanation.arrays["element_group"]
    valid = owner >= 0
    out = np.zeros(owner.shape, dtype=np.float64)
    out[valid] = np.asarray(values, dtype=np.float64)[owner[valid]]
    return out.reshape(list(explanation.extras["sample_shape"])).max(axis=0)


def _class_maps(explanation: Explanation) -> Figure:
    from matplotlib.figure import Figure

    classes = explanation.target_names
    n = len(classes)
    cols = min(n, 10)
    rows = -(-n // cols)
    top = float(explanation.importance.max()) or 1.0
    fig = Figure(figsize=(1.35 * cols + 1.0, 1.5 * rows + 0.7), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for c, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if c >= n:
            ax.set_axis_off()
            continue
        im = ax.imshow(_pixels(explanation, explanation.importance[c]), cmap="magma", vmin=0.0, vmax=top, interpolation="nearest")
        ax.set_title(f"class {classes[c]}", fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9, label="stable attribution")
    fig.suptitle("what each class logit relies on: |IG| weighted by its stability across invariant samples", fontsize=10)
    return fig


def _image_map(explanation: Explanation) -> Figure:
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    arrays, extras = explanation.arrays, explanation.extras

    def pixels(values: np.ndarray) -> np.ndarray:
        return _pixels(explanation, values)

    change = pixels(arrays["nuisance_change"])
    attribution = pixels(explanation.importance.max(axis=0))
    status = pixels(arrays["status"].astype(np.float64))
    fig = Figure(figsize=(10.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, values, title, cmap in (
        (axes[0], change, "change under nuisance sampling\n(mean |x_gen - x_rec|)", "viridis"),
        (axes[1], attribution, "stable attribution\n(max over classes)", "magma"),
    ):
        im = ax.imshow(values, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.85)
    im = axes[2].imshow(status, cmap=ListedColormap(STATUS_COLORS), vmin=-0.5, vmax=3.5, interpolation="nearest")
    axes[2].set_title("invariance map", fontsize=10)
    bar = fig.colorbar(im, ax=axes[2], ticks=[0, 1, 2, 3], shrink=0.85)
    bar.ax.set_yticklabels(list(STATUS), fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(_summary(extras), fontsize=10)
    return fig


def _summary(extras: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    leak = f"leakage {fmt(extras.get('leakage'))} (probe {fmt(extras.get('leakage_probe_accuracy'))} vs chance {fmt(extras.get('leakage_chance'))})"
    if extras.get("leakage_high"):
        leak += " HIGH"
    preservation = fmt(extras.get("label_preservation"))
    if (extras.get("collapse") or {}).get("all_collapsed"):
        preservation += " (NOT INFORMATIVE: nuisance dims collapsed)"
    return (
        f"preservation {preservation}, {leak}, "
        f"head accuracy {fmt(extras.get('head_accuracy'))} vs plain classifier {fmt(extras.get('plain_classifier_accuracy'))}"
    )


def _table(explanation: Explanation) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    arrays, extras = explanation.arrays, explanation.extras
    names = np.asarray(explanation.feature_names)
    change = np.asarray(arrays["nuisance_change"], dtype=np.float64)
    attribution = explanation.importance.max(axis=0)
    status = np.asarray(arrays["status"]).astype(int)
    order = np.lexsort((-attribution, -change, -status))  # decision first, then free, then fixed
    if len(order) > MAX_ROWS:
        top_free = np.argsort(-np.asarray(arrays["invariance_score"]))[: MAX_ROWS // 2]
        top_attr = np.argsort(-attribution)[: MAX_ROWS // 2]
        keep = set(top_free.tolist()) | set(top_attr.tolist())
        order = np.asarray([i for i in order if i in keep])
    colors = [STATUS_COLORS[s] for s in status[order]]
    y = np.arange(len(order))[::-1]
    fig = Figure(figsize=(10, 1.6 + 0.28 * len(order)), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    left.barh(y, change[order], color=colors)
    left.set_title("change under nuisance sampling\n(mean |x_gen - x_rec|)", fontsize=10)
    right.barh(y, attribution[order], color=colors)
    right.set_title("stable attribution\n(max over classes)", fontsize=10)
    left.set_yticks(y)
    left.set_yticklabels(names[order], fontsize=8)
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    fig.legend(handles=[Patch(color=c, label=s) for c, s in zip(STATUS_COLORS, STATUS)], loc="outside lower center", ncol=4, fontsize=9)
    fig.suptitle(_summary(extras), fontsize=10)
    return fig
