"""Running one explainer on one target: check, freeze the model, time, stamp metadata.

The runner calls :func:`run_explainer` for each step of a recipe; Python users
call it to get the same guarantees without a recipe; :func:`aeinterp.explain` builds
the model adapter and dataset from a plain nn.Module and array first.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version as dist_version
from typing import Any

import numpy as np

from ._version import __version__
from .checks import check_explanation, check_finite_outputs, check_gradient_path
from .data import Dataset
from .errors import AeinterpError, ExplainerError
from .explainer import Explainer, ExplainerParams
from .explanation import Explanation
from .model import Model, frozen
from .progress import Progress
from .targets import Target, with_latent_pca

__all__ = ["run_explainer", "library_versions"]


def library_versions(*extra: str) -> dict[str, str]:
    versions = {"python": platform.python_version(), "aeinterp": __version__}
    for name in ("torch", "numpy", *extra):
        try:
            versions[name] = dist_version(name)
        except PackageNotFoundError:
            pass
    return versions


def _with_rows(arrays: Mapping[str, Any], used: Mapping[str, np.ndarray], data: Dataset) -> dict[str, Any]:
    """The explainer's arrays plus ``<split>_index``: the dataset rows each split it sampled contributed."""
    out = dict(arrays)
    for split, local in used.items():
        base = getattr(data, f"{split}_index", None)
        rows = np.asarray(base)[local] if base is not None else np.asarray(local)
        out.setdefault(f"{split}_index", rows.astype(np.int64))
    return out


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
    see :func:`aeinterp.executors.make_executor`) says where the work runs; the
    default is this process.

    Errors from the explainer itself come back as :class:`ExplainerError`
    naming the explainer and its distribution, with the cause attached.
    Before ``explain`` the target's outputs are checked to be finite (a
    :class:`ModelError` names the first bad sample) and, for explainers that
    declare ``needs_gradients``, to depend on the input through autograd (a
    :class:`CapabilityError` names the likely cause). After it, the result is
    checked against the data (:func:`aeinterp.checks.check_explanation`).
    """
    instance = explainer if isinstance(explainer, Explainer) else explainer(params, progress=progress)
    instance.rows_used = {}
    target = Target(target)
    if executor is not None:
        from .executors import make_executor

        chosen = make_executor(executor)
        if hasattr(chosen, "run_explainer"):  # it decides what fans out; its tasks call back here without one
            return chosen.run_explainer(instance, model, data, target=target, seed=seed, distribution=distribution, version=version)
        if hasattr(instance, "executor"):
            instance.executor = chosen  # type: ignore[attr-defined]
    start = time.perf_counter()
    try:
        instance.check(model, data, target)
        check_finite_outputs(model, data, target)
        if instance.capabilities.needs_gradients:
            check_gradient_path(model, data, target, explainer=instance.name)
        with frozen(model):
            work = with_latent_pca(model, data) if target is Target.LATENT_PCA else model
            result = instance.explain(work, data, target=target, rng=np.random.default_rng(seed))
    except AeinterpError:
        raise
    except Exception as exc:
        where = f" ({distribution} {version})".rstrip() if distribution else ""
        raise ExplainerError(
            f"explainer {instance.name!r}{where} failed: {type(exc).__name__}: {exc}", plugin=instance.name, distribution=distribution
        ) from exc
    runtime = time.perf_counter() - start
    if not isinstance(result, Explanation):
        raise ExplainerError(f"explainer {instance.name!r} returned {type(result).__name__}, not an Explanation", plugin=instance.name, distribution=distribution)
    if target is Target.LATENT_PCA:  # which directions were explained, and how much of the code each carries
        pca = work.latent_pca  # type: ignore[attr-defined]
        summary = [*result.extras.get("summary", []), pca.summary()]
        result = result.replace(extras={**result.extras, "latent_pca": pca.to_json(), "summary": summary})
    result = check_explanation(result, model, data, target, explainer=instance.name, distribution=distribution, features=instance.capabilities.features)
    return result.replace(
        arrays=_with_rows(result.arrays, instance.rows_used, data),
        explainer=instance.name,
        distribution=distribution,
        version=version,
        params=instance.params.model_dump(mode="json"),
        seed=seed,
        runtime_s=runtime,
        target=target.value,
        library_versions=library_versions(),
    )
