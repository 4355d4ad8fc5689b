"""``Explanation.plot``: the figures the reports draw, one method each, every one a matplotlib Figure.

``exp.plot()`` (or ``exp.plot.importance()``) draws the view that fits the data; the others:
``heatmap``, ``bar``, ``target``, ``beeswarm``, ``waterfall``, ``dependence``, ``image`` and
``sequence``. Views of per-sample values take ``data=`` (alias ``X=``): the dataset or the explained
rows, used for colour and x-axis values; ``data_info=`` (``results.json``'s ``data``: ``kind`` and
``sample_shape``) helps where feature names do not say the grid.

Targets are named (``"z3"``) or indexed, samples are row labels (``sample_names``: your DataFrame's
index) or positions: ``exp.plot.bar("z0")``, ``exp.plot.waterfall(sample="cell_110", target="z3")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from ..explanation import Explanation
from . import figures as _f
from . import local_figures as _lf

__all__ = ["ExplanationPlots"]


class ExplanationPlots:
    """Plot namespace of one :class:`~aeinterp.Explanation` (reached as ``explanation.plot``)."""

    def __init__(self, explanation: Explanation, data_info: Mapping[str, Any] | None = None) -> None:
        self._e = explanation
        self._info = data_info

    def __call__(self, target: Any = None, **kwargs: Any) -> Figure:
        return self.importance(target, **kwargs)

    def __repr__(self) -> str:
        return f"<plots of {self._e.explainer or 'an explanation'}: importance, heatmap, bar, target, beeswarm, waterfall, dependence, image, sequence>"

    def _only(self, target: Any) -> Explanation:
        return self._e if target is None else self._e.sel(target=target)

    def importance(
        self, target: Any = None, *, max_targets: int = _f.MAX_TARGETS, top_k: int = _f.TOP_K, data_info: Mapping[str, Any] | None = None
    ) -> Figure:
        """The global view that fits the data kind (bars, image maps, feature x time maps, heatmap, top-k);
        ``target``: a name, index or list of them (default: all)."""
        return _f.importance_figure(self._only(target), data_info or self._info, max_targets=max_targets, top_k=top_k)

    def heatmap(self, target: Any = None, *, max_targets: int = _f.MAX_TARGETS, max_features: int = 40) -> Figure:
        """Targets x features heatmap of the most important ones (the title says how many of each)."""
        return _f.heatmap_figure(self._only(target), max_targets=max_targets, max_features=max_features)

    def bar(self, target: int | str | None = None, *, top_k: int = 20) -> Figure:
        """Model-level input ranking: mean importance over all explained targets (± std with repeats);
        with ``target`` (a name such as ``"z0"`` or an index), that target's ranking."""
        if target is not None:
            return self.target(target, top_k=top_k)
        return _f.bar_summary(self._e, top_k=top_k)

    def target(self, target: int | str = 0, *, top_k: int = 20) -> Figure:
        """One target's importance as ranked bars."""
        return _f.target_bars(self._e, _lf._resolve_target(self._e, target), top_k=top_k)

    def beeswarm(
        self, target: int | str | None = None, *, data: Any = None, X: Any = None, max_features: int = 10, max_targets: int = 4
    ) -> Figure:  # noqa: N803
        """Signed per-sample attributions per feature, coloured by feature value when ``data`` is given."""
        return _lf.beeswarm(self._e, target, data=data if data is not None else X, max_features=max_features, max_targets=max_targets)

    def waterfall(
        self, sample: int | str = 0, target: int | str | None = None, *, top_k: int = 10, data: Any = None, X: Any = None
    ) -> Figure:  # noqa: N803
        """One sample (row label or position) and one target (default: the first, z0): its attributions
        from the expected value to its output; with ``data`` each feature's value is shown."""
        return _lf.waterfall(self._e, sample, target, top_k=top_k, data=data if data is not None else X)

    def dependence(self, feature: int | str, target: int | str | None = None, *, data: Any = None, X: Any = None) -> Figure:  # noqa: N803
        """Attribution of one feature against its value (needs ``data``)."""
        return _lf.dependence(self._e, feature, target, data=data if data is not None else X)

    def image(
        self,
        target: Any = None,
        *,
        samples: Any = None,
        data: Any = None,
        X: Any = None,
        max_targets: int = _f.MAX_TARGETS,  # noqa: N803
        over: Any = None,
        data_info: Mapping[str, Any] | None = None,
    ) -> Figure:
        """Per-target maps on the image's H x W grid (signed: diverging colours); with ``over`` (an image)
        a transparent overlay on it. With ``samples`` (row labels or positions): one row of samples per
        target, each sample's attribution over its own image (from ``data``, the explained rows)."""
        e = self._e if samples is not None else self._only(target)
        if samples is not None:
            return _lf.image_samples(
                e, samples, target, data=data if data is not None else X, max_targets=min(max_targets, 8), data_info=data_info or self._info
            )
        return _f.image_maps(e, max_targets=max_targets, over=over, data_info=data_info or self._info)

    def sequence(self, target: Any = None, *, max_targets: int = 12, data_info: Mapping[str, Any] | None = None) -> Figure:
        """Per-target feature x time maps with a per-feature bar (``target``: names or indices; default: the most important)."""
        return _f.sequence_maps(self._only(target), max_targets=max_targets, data_info=data_info or self._info)
