"""Running one explainer on one target in this process: check, freeze the model, time, stamp metadata.

:func:`run_step` is the path every step takes in the end: the local executor
runs it directly, the Ray executor inside its task. Callers that may choose an
executor use :func:`aeinterp.run_explainer` (:mod:`.dispatch`), which sends the
step there first.
"""

from __future__ import annotations

import platform
import sys
import time
import warnings
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import Any

import numpy as np

from .._version import __version__
from ..data import Dataset
from ..errors import AeinterpError, ExplainerError
from ..explainer import Explainer, ExplainerParams
from ..explanation import Explanation
from ..model import Model, frozen
from ..progress import Progress
from ..targets import Target, with_latent_pca
from ..toolkit.checks import check_explanation, check_finite_outputs, check_gradient_path

__all__ = ["run_step", "library_versions"]


def library_versions(*extra: str) -> dict[str, str]:
    """The versions a result was computed with: an imported module's own ``__version__`` (what actually ran; reading
    the installed metadata instead cost 3.4 ms, a third of a small explain call), else the installed distribution's."""
    versions = {"python": platform.python_version(), "aeinterp": __version__}
    for name in ("torch", "numpy", *extra):
        module_version = getattr(sys.modules.get(name), "__version__", None)
        if module_version is not None:
            versions[name] = str(module_version)
            continue
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


def _sample_names(result: Explanation, data: Dataset, instance: Explainer) -> list[str] | None:
    """The data's row names of ``local``'s rows (which index the explain split), when the data has row names."""
    names = getattr(data, "row_names", None)
    explain_index = getattr(data, "explain_index", None)  # an ArrayDataset's (the Dataset protocol has no row names)
    if result.sample_names is not None or names is None or explain_index is None or result.local is None:
        return result.sample_names
    if getattr(instance.params, "split", "explain") != "explain":
        return None  # local's rows are of another split
    explain = np.asarray(explain_index)
    ids = result._sample_ids()
    if ids.size and (ids.min() < 0 or ids.max() >= len(explain)):
        return None
    return [names[int(r)] for r in explain[ids]]


def training_note(model: Any) -> str | None:
    """What changes when a model left in training mode is explained in eval mode (dropout, batch norm), or None."""
    from torch import nn

    from ..model import torch_modules

    kinds = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
    moving = sorted({type(m).__name__ for root in torch_modules(model) for m in root.modules() if m.training and isinstance(m, kinds)})
    if not moving:
        return None
    return (
        f"the model was in training mode; it was explained in eval mode ({', '.join(moving)} behave as at inference: "
        "dropout off, batch-norm running statistics) and left in training mode afterwards; call model.eval() first to silence this"
    )


def run_step(
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
) -> Explanation:
    """Check capabilities, run ``explain`` with the model frozen, return a stamped Explanation.

    Errors from the explainer itself come back as :class:`ExplainerError`
    naming the explainer and its distribution, with the cause attached.
    Before ``explain`` the target's outputs are checked to be finite (a
    :class:`ModelError` names the first bad sample) and, for explainers that
    declare ``needs_gradients``, to depend on the input through autograd (a
    :class:`CapabilityError` names the likely cause). After it, the result is
    checked against the data (:func:`aeinterp.toolkit.checks.check_explanation`).
    """
    instance = explainer if isinstance(explainer, Explainer) else explainer(params, progress=progress)
    instance.rows_used = {}
    target = Target(target)
    note = training_note(model)
    if note is not None:
        warnings.warn(note, stacklevel=2)
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
        raise ExplainerError(
            f"explainer {instance.name!r} returned {type(result).__name__}, not an Explanation",
            plugin=instance.name,
            distribution=distribution,
        )
    if target is Target.LATENT_PCA:  # which directions were explained, and how much of the code each carries
        pca = work.latent_pca  # type: ignore[attr-defined]
        summary = [*result.extras.get("summary", []), pca.summary()]
        result = result.replace(extras={**result.extras, "latent_pca": pca.to_json(), "summary": summary})
    result = check_explanation(
        result,
        model,
        data,
        target,
        explainer=instance.name,
        distribution=distribution,
        features=instance.capabilities.features,
        split="fit" if getattr(instance.params, "split", "explain") == "fit" else "explain",
    )
    if note is not None:
        result = result.replace(extras={**result.extras, "model_mode": note})
    return result.replace(
        sample_names=_sample_names(result, data, instance),
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
