"""The views a user reaches from a result object: ``exp.plot``, its notebook display, ``exp.to_anndata``.

:class:`aeinterp.explanation.Explanation` is a base type and imports no
reporter; importing this module attaches the report layer's views to it
(once: assigning the same functions again changes nothing). ``aeinterp``
imports it together with ``Explanation``, and so do the API, the results
loader and the runner, so every result a user holds has them. matplotlib is
imported only when a figure is drawn.
"""

from __future__ import annotations

from typing import Any

from ..explanation import Explanation

__all__ = ["attach"]


def _plot(self: Explanation) -> Any:
    from .plotting import ExplanationPlots  # matplotlib only when plotting

    return ExplanationPlots(self)


def _repr_html_(self: Explanation) -> str:
    from .notebook import explanation_html

    return explanation_html(self)


def _to_anndata(self: Explanation, adata: Any, key: str | None = None) -> Any:
    """Write this explanation into ``adata`` in place (``varm["aeinterp_<key>"]`` genes x targets,
    per-cell ``obsm``, ``uns["aeinterp"]``; see :mod:`aeinterp.io.anndata_out`) and return it.
    ``key`` defaults to the explainer's name."""
    from ..io.anndata_out import write_explanations

    return write_explanations(adata, {key or self.explainer or "explanation": self})


_plot.__doc__ = """The figures the reports draw, as methods returning matplotlib Figures: ``exp.plot.heatmap()``,
``.bar()`` (``.bar("z0")`` for one target), ``.beeswarm(target, data=X)``, ``.waterfall(sample="cell_110", data=X)``,
``.dependence(feature, data=X)``, ``.image()`` (``over=img``; ``samples=[...], data=X`` per sample), ``.sequence()``;
``exp.plot()`` draws the view that fits the data. Targets are named or indexed, samples are row labels or positions."""
_repr_html_.__doc__ = "Notebook display: a compact importance picture and a top-features table."


def attach(cls: type = Explanation) -> None:
    """Give ``cls`` (the result type) its ``plot`` namespace and notebook display."""
    cls.plot = property(_plot, doc=_plot.__doc__)  # type: ignore[attr-defined]
    cls._repr_html_ = _repr_html_  # type: ignore[attr-defined]
    cls.to_anndata = _to_anndata  # type: ignore[attr-defined]


attach()
