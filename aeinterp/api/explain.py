"""One explainer on your own model and arrays: :func:`explain`.

It validates like a recipe (an unknown method gets the nearest name, params
are checked by the explainer's ``Params``) and reaches the same
:func:`aeinterp.run_explainer` path as the runner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import AeinterpError, RecipeError
from ..explanation import Explanation
from ..plugins.registry import ExplainerRegistry
from ..progress import NullProgress, Progress, RichProgress, TextProgress
from ..report import views as _views  # noqa: F401  (exp.plot and notebook display on every result)
from ..run.dispatch import run_explainer
from ..targets import Target

if TYPE_CHECKING:
    pass
from .inputs import _inputs, _with_source

__all__ = ["explain", "find_explainer"]


def _params(method: str, params: Mapping[str, Any], registry: ExplainerRegistry, loc: str = "params") -> Any:
    from pydantic import ValidationError

    from ..recipe.schema import _problems

    entry = registry.get(method) if isinstance(method, str) else None
    if entry is None:
        raise RecipeError(registry.unknown_message(str(method)), source=f"for {method!r}", what="method")
    try:
        return entry, entry.cls.Params.model_validate(dict(params))
    except ValidationError as exc:
        raise RecipeError(_problems(exc, None, entry.cls.Params, prefix=[loc]), source=f"of {method!r}", what="params") from None


def _progress(progress: bool | Progress | None) -> tuple[Any, Progress]:
    """(context manager, tracker): rich bars in a terminal or notebook, silent otherwise or when asked."""
    if progress is False:
        bar = NullProgress()
        return bar, bar
    if progress is None or progress is True:
        from rich.console import Console

        from ..text import safe_console

        console = safe_console(Console(stderr=True))  # step names in the bars: control characters shown escaped
        if console.is_jupyter:  # rich's live bars need ipywidgets there and warn on every call without it
            text = TextProgress()
            return text, text
        if progress is True or console.is_terminal:
            bar = RichProgress(console)  # type: ignore[assignment]
            return bar, bar
        bar = NullProgress()
        return bar, bar
    return NullProgress(), progress


def _registry(registry: ExplainerRegistry | None) -> ExplainerRegistry:
    from ..report.display import enable_figure_display

    enable_figure_display()  # figures returned to a notebook cell are drawn
    if registry is not None:
        return registry
    from ..plugins.manager import PluginHost

    return PluginHost().registry


def _single_target(target: str | Target, targets: Any) -> Target:
    if targets is not None:
        if isinstance(targets, (list, tuple)):
            if len(targets) != 1:
                raise AeinterpError(
                    f"explain() runs one target, got {list(targets)}; use aeinterp.explain_all(..., targets=[...]) for several"
                )
            targets = targets[0]
        target = targets
    try:
        return Target(target)
    except ValueError:
        raise AeinterpError(f"unknown target {target!r}; use one of {', '.join(t.value for t in Target)}") from None


def explain(
    model: Any,
    X: Any,
    method: str,
    *,
    target: str | Target = "latent",
    targets: str | Sequence[str] | None = None,
    background: Any = None,
    feature_names: Sequence[str] | None = None,
    kind: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    seed: int = 0,
    progress: bool | Progress | None = None,
    encoder: str | None = None,
    decoder: str | None = None,
    code: int | str | None = None,
    registry: ExplainerRegistry | None = None,
    device: str | None = None,
    executor: Any = None,
    sample_names: Sequence[Any] | None = None,
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
    **params: Any,
) -> Explanation:
    """Explain every target (all latent dims by default) of ``model`` on exactly the rows of ``X``.

    Parameters
    ----------
    model:
        a ``torch.nn.Module`` (encoder/decoder submodules or encode/decode
        methods; VAE outputs as a tuple, dict or distribution — the mean is
        the code unless ``code=`` says otherwise), a TorchScript module, or an
        :class:`aeinterp.Model`.
    X:
        the samples to explain: numpy array, torch tensor or pandas DataFrame
        (feature names from its columns, row labels from its index: the
        result's ``sample_names``, ``to_pandas("local")``'s index and
        ``exp.sel(sample=...)``), a scipy sparse matrix, an AnnData, or the path of an
        ``.h5ad`` file or an AnnData ``.zarr`` store (read as a recipe reads it: sparse
        stays sparse, large stores are read backed; see ``docs/singlecell.md``).
    method:
        a registered explainer name (``aeinterp plugins`` lists them), e.g.
        ``"deepshap"``, ``"permutation"``, ``"integrated_gradients"``.
    target / targets:
        ``latent`` (default), ``reconstruction``, ``reconstruction_error``
        (``prediction`` for supervised models).
    background:
        the rows that form the background / baseline / fit split (default: ``X``).
    progress:
        ``None`` shows a progress bar in a terminal (rich) or a notebook (a text line
        per loop, no widgets needed), ``False`` never.
    device:
        ``auto | cpu | cuda[:i] | mps``: move the model there first (``None``: where it is).
    executor:
        where the work runs: ``None``/``"local"`` (this process) or ``"ray"`` /
        an ``executor:`` mapping (see :func:`aeinterp.run.executors.make_executor`).
    sample_names:
        labels of ``X``'s rows (default: a DataFrame's index when it is not 0..n-1, an AnnData's ``obs_names``).
    layer, labels, split:
        for an AnnData ``X``: which matrix (``X``, ``raw`` or a layer name), the ``obs`` column of
        labels, and an ``obs`` column whose value ``test`` marks the cells to explain (the others
        are the background). See ``docs/singlecell.md``.
    **params:
        the explainer's parameters, checked by its ``Params``.
    """
    from ..explainer import Explainer

    if isinstance(model, Explainer) or (isinstance(model, type) and issubclass(model, Explainer)):
        # the plugin author's form, explain(ExplainerClass, model, dataset, ...): the same as run_explainer
        passed: dict[str, Any] = {"progress": progress} if progress is not None and not isinstance(progress, bool) else {}
        return run_explainer(model, X, method, target=target, seed=seed, executor=executor, **passed, **params)  # type: ignore[arg-type]
    reg = _registry(registry)
    entry, p = _params(method, params, reg)
    tgt = _single_target(target, targets)
    data, adapted = _inputs(
        model,
        X,
        background=background,
        feature_names=feature_names,
        kind=kind,
        groups=groups,
        sample_names=sample_names,
        encoder=encoder,
        decoder=decoder,
        code=code,
        device=device,
        layer=layer,
        labels=labels,
        split=split,
    )
    bar, tracker = _progress(progress)
    with bar:
        result = run_explainer(
            entry.cls(p, progress=tracker),
            adapted,
            data,
            target=tgt,
            seed=seed,
            distribution=entry.distribution,
            version=entry.version,
            executor=executor,
        )
    return _with_source(result, data)


def find_explainer(name: str) -> Any:
    """The installed explainer registered as ``name`` (its ``cls``, ``distribution`` and ``version``), or None.

    For explainers that run another one (faithfulness re-runs the explainer it
    checks): the same plugin discovery as a run, with the ``AEINTERP_*`` switches.
    """
    from ..plugins.manager import PluginHost

    return PluginHost().registry.get(name)
