"""Where a run's work runs: ``local`` (this process, one step after another) or ``ray``.

A recipe chooses with its ``executor:`` section, the CLI with ``--executor``,
Python code with ``Runner(executor=...)`` or ``aeinterp.explain(..., executor=...)``;
all of them go through :func:`make_executor`. The ``local`` executor is
:class:`aeinterp.toolkit.chunks.LocalExecutor` and imports nothing; the ``ray``
executor (:mod:`aeinterp.run.executors.ray`, extra ``aeinterp[ray]``) imports Ray
when it first connects, never before.

``address`` (Ray only)
    ``auto``: the cluster named by ``RAY_ADDRESS`` or started on this machine
    with ``ray start``, else a new local one; ``local``: always a new local
    cluster of this machine's CPUs; ``ray://host:port``: a remote cluster via
    Ray Client; ``host:port``: a cluster's head node, from a job running in it.
``num_cpus`` / ``num_gpus``
    what **each task** asks the cluster for (Ray's own meaning): a chunk or a
    step runs with ``num_cpus`` CPU threads (default 1) and ``num_gpus`` GPUs
    (default 0; fractions share a GPU). How many tasks run at once is the
    cluster's CPUs divided by ``num_cpus``.
``max_retries``
    how often a task whose worker died (killed, out of memory, node lost) is
    re-run before its step fails with a message saying so.
``connect_timeout``
    seconds a ``host:port`` / ``ray://host:port`` address has to answer before
    the run fails with a clear message (default 30; Ray alone would retry for minutes).
``data_from_path``
    samples memory-mapped from a ``.npy`` file reach the workers as the
    file's path (they map it themselves; default ``true``, every node must
    see the file); ``false`` sends them through the object store.

An executor implements :class:`aeinterp.toolkit.chunks.Executor` (``map_chunks``,
``workers``). One that sets ``concurrent_steps = True`` also provides
``run_explainer(explainer, model, data, *, target, seed, distribution, version)``
(one whole step), ``cancel_all()`` (Ctrl-C) and ``release()`` (end of a run);
the runner then starts every step whose dependencies have finished at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...recipe.executor import EXECUTOR_KINDS, ExecutorConfig
from ...toolkit.chunks import Executor, LocalExecutor

__all__ = ["ExecutorConfig", "make_executor", "EXECUTOR_KINDS"]


def make_executor(spec: Executor | ExecutorConfig | Mapping[str, Any] | str | None = None) -> Executor:
    """The executor a spec names: ``None`` or ``"local"`` -> local; ``"ray"`` -> Ray with defaults;
    a mapping or :class:`ExecutorConfig` -> as configured; an executor object -> itself.

    Raises :class:`aeinterp.errors.RecipeError` for a malformed spec. Building a
    Ray executor does not import Ray yet; its first use does (and raises
    :class:`aeinterp.errors.MissingDependencyError` when Ray is not installed).
    """
    from pydantic import ValidationError

    from ...errors import RecipeError

    if spec is None:
        return LocalExecutor()
    if hasattr(spec, "map_chunks"):
        return spec  # type: ignore[return-value]
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, ExecutorConfig):
        try:
            spec = ExecutorConfig.model_validate(dict(spec))
        except ValidationError as exc:
            raise RecipeError([f"executor.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from None
        except (TypeError, ValueError):
            raise RecipeError(f"executor: expected local, ray or a mapping, got {spec!r}") from None
    if spec.kind == "local":
        return LocalExecutor()
    from .ray import RayExecutor

    return RayExecutor(
        address=spec.address,
        num_cpus=spec.num_cpus,
        num_gpus=spec.num_gpus,
        max_retries=spec.max_retries,
        data_from_path=spec.data_from_path,  # type: ignore[return-value]
        connect_timeout=spec.connect_timeout,
    )
