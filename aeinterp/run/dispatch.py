"""The public way to run one explainer: :func:`run_explainer`, here or on an executor.

Python users and plugin authors call it to get the runner's guarantees without
a recipe (:func:`aeinterp.explain` builds the model adapter and dataset from a
plain ``nn.Module`` and array first). With no ``executor`` it is
:func:`aeinterp.run.step.run_step`; with one, the executor decides what fans
out, and its tasks call ``run_step`` in the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..data import Dataset
from ..explainer import Explainer, ExplainerParams
from ..explanation import Explanation
from ..model import Model
from ..progress import Progress
from ..targets import Target
from .executors import make_executor
from .step import run_step

__all__ = ["run_explainer"]


def run_explainer(
    explainer: type[Explainer] | Explainer,
    model: Model,
    data: Dataset,
    *,
    target: Target | str = Target.LATENT,
    seed: int = 0,
    params: ExplainerParams | Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    distribution: str = "",
    version: str = "",
    executor: Any = None,
) -> Explanation:
    """Check capabilities, run ``explain`` with the model frozen, return a stamped Explanation.

    ``executor`` (an executor, ``"local"``, ``"ray"`` or an ``executor:`` mapping,
    see :func:`aeinterp.run.executors.make_executor`) says where the work runs; the
    default is this process. Everything else is :func:`aeinterp.run.step.run_step`'s:
    errors from the explainer come back as :class:`aeinterp.errors.ExplainerError`
    naming it and its distribution; the target's outputs are checked to be finite
    and, for gradient methods, to reach the input; the result is checked against the data.
    """
    kwargs: dict[str, Any] = {
        "target": target,
        "seed": seed,
        "params": params,
        "progress": progress,
        "distribution": distribution,
        "version": version,
    }
    if executor is None:
        return run_step(explainer, model, data, **kwargs)
    instance = explainer if isinstance(explainer, Explainer) else explainer(params, progress=progress)
    chosen = make_executor(executor)
    if hasattr(chosen, "run_explainer"):  # it decides what fans out; its tasks call run_step without one
        return chosen.run_explainer(instance, model, data, target=Target(target), seed=seed, distribution=distribution, version=version)
    if hasattr(instance, "executor"):
        instance.executor = chosen  # type: ignore[attr-defined]
    return run_step(instance, model, data, **kwargs)
