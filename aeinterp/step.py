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
from .data import Dataset
from .errors import AeinterpError, ExplainerError
from .explainer import Explainer, ExplainerParams
from .explanation import Explanation
from .model import Model, frozen
from .progress import Progress
from .targets import Target

__all__ = ["run_explainer", "library_versions"]


def library_versions(*extra: str) -> dict[str, str]:
    versions = {"python": platform.python_version(), "aeinterp": __version__}
    for name in ("torch", "numpy", *extra):
        try:
            versions[name] = dist_version(name)
        except PackageNotFoundError:
            pass
    return versions


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
) -> Explanation:
    """Check capabilities, run ``explain`` with the model frozen, return a stamped Explanation.

    Errors from the explainer itself come back as :class:`ExplainerError`
    naming the explainer and its distribution, with the cause attached.
    """
    instance = explainer if isinstance(explainer, Explainer) else explainer(params, progress=progress)
    target = Target(target)
    start = time.perf_counter()
    try:
        instance.check(model, data, target)
        with frozen(model):
            result = instance.explain(model, data, target=target, rng=np.random.default_rng(seed))
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
    return result.replace(
        explainer=instance.name,
        distribution=distribution,
        version=version,
        params=instance.params.model_dump(mode="json"),
        seed=seed,
        runtime_s=runtime,
        target=target.value,
        library_versions=library_versions(),
    )
