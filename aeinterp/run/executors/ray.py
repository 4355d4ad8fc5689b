"""The Ray executor (extra ``aeinterp[ray]``): steps, sample chunks and targets as Ray tasks.

What runs where
    A :class:`~aeinterp.toolkit.chunks.ChunkedExplainer` step runs ``prepare`` and
    ``finish`` on the driver; each chunk's ``explain_chunk`` is one Ray task,
    given the generator ``chunk_rng(base_seed, i)`` of its index, so the
    partials are those the local executor computes. They are added up on the
    driver in chunk order, as they arrive. Any other step runs whole, as one
    task. The runner runs independent steps at the same time (see
    :meth:`aeinterp.runner.Runner.run`).

Object store
    The model and the data are put into Ray's object store once per run (and
    kept until :meth:`RayExecutor.release`); a step's shared ``state`` once per
    step. Tasks receive references, never copies in their arguments; numpy
    arrays arrive in a task zero-copy and therefore **read-only**.

Data read from its file
    Samples memory-mapped from a ``.npy`` file (``data: {path: cells.npy}``)
    do not go through the object store: the dataset travels as the file's
    path, offset, dtype and shape (a few hundred bytes), and each worker maps
    the file itself (:class:`aeinterp.run.executors.transfer.ByPath`). Every node must see the file at the
    same path (a shared filesystem) unchanged (its size and modification time
    are checked); ``data_from_path=False`` sends the samples instead.

GPUs
    The driver sends the model (and a step's state) with its tensors on the
    CPU, so any node can unpickle it. With ``num_gpus`` set, a task moves them
    to the GPU Ray gave it (``CUDA_VISIBLE_DEVICES``); a model on a GPU with no
    ``num_gpus``, or more ``num_gpus`` than the cluster has (tasks that would
    never start), fails the step at once, saying so.

Failures
    An exception in a task is re-raised on the driver as itself, with the
    worker's traceback attached as a note, so the step fails with the worker's
    error and the other steps go on. A task whose worker died (killed, out of
    memory, node lost) is re-run up to ``max_retries`` times by Ray; after that
    its step fails with :class:`ChunkLostError`, never with a chunk silently
    missing. Ctrl-C cancels every task in flight (:meth:`RayExecutor.cancel_all`).

Connection and timeouts
    One connection per process, made behind a lock: steps that start at the
    same time share it (they never race ``ray.init``). An ``address`` naming a
    host and port is probed first: nothing listening there within
    ``connect_timeout`` seconds is a :class:`RayConnectionError` at once, not
    endless retries. A step's ``timeout`` (or ``--timeout``) cancels its tasks
    when it runs out (:meth:`RayExecutor.cancel_step`, forcing the workers to
    stop) and the step fails with :class:`aeinterp.errors.StepTimeout`.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ...data import ArrayDataset
from ...errors import AeinterpError, StepTimeout, require
from ...explainer import Explainer
from ...explanation import Explanation
from ...targets import Target
from ...toolkit.chunks import ChunkedExplainer, Partial, chunk_rng
from .transfer import ByPath, file_region, on_cpu, tensors_to

__all__ = ["RayExecutor", "ChunkLostError", "RayConnectionError"]

_CONNECT_LOCK = threading.Lock()  # one ray.init per process, however many steps or executors start at once


class ChunkLostError(RuntimeError):
    """A task's worker died more often than ``max_retries`` allows."""


class RayConnectionError(AeinterpError):
    """The Ray cluster named by ``address`` cannot be reached."""


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` or ``ray://host:port`` address (None for auto / local)."""
    bare = address.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def _LOST(ray: Any) -> tuple[type[BaseException], ...]:  # noqa: N802 - a tuple of exception classes
    """Ray's errors that mean a task's worker (or its node, or its result) was lost."""
    x = ray.exceptions
    return tuple(
        c
        for c in (
            getattr(x, n, None)
            for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OutOfMemoryError", "LocalRayletDiedError", "RayActorError")
        )
        if c is not None
    )


def _threads(cpus: float | None) -> int:
    return max(1, int(cpus or 1))


def _in_worker(cpus: float | None, gpus: float | None, model: Any, state: Any = None) -> tuple[int, Any]:
    """Set the worker's torch threads; with ``gpus``, move the model (and tensors in ``state``) to the task's GPU.

    Returns the threads and the state. Ray gives a task with ``num_gpus`` its
    GPU(s) as ``CUDA_VISIBLE_DEVICES``, so ``cuda`` is the task's own GPU; the
    driver sends models and states with their tensors on the CPU.
    """
    import torch

    threads = _threads(cpus)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if gpus:
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"the task asked for {gpus} GPU(s) (executor num_gpus) but torch {torch.__version__} on {os.uname().nodename} sees no CUDA GPU"
            )
        module = getattr(model, "module", None)
        if isinstance(module, torch.nn.Module):
            module.to("cuda")  # in place: the adapter's encoder and decoder are this module's parts
        state = tensors_to(state, "cuda")
    return threads, state


def _chunk_task(
    spec: tuple[type[ChunkedExplainer], Any],
    model: Any,
    data: Any,
    state: Any,
    units: np.ndarray,
    index: int,
    base_seed: int,
    target: str,
    cpus: float | None,
    gpus: float | None = None,
) -> Partial:
    """One chunk, in a Ray worker: a fresh explainer with the step's params, the chunk's own generator."""
    cls, params = spec
    explainer = cls(params)
    explainer.cpus, state = _in_worker(cpus, gpus, model, state)
    return explainer.explain_chunk(model, data, state, units, target=Target(target), rng=chunk_rng(base_seed, index))


def _step_task(
    spec: tuple[type[Explainer], Any],
    model: Any,
    data: Any,
    target: str,
    seed: int,
    distribution: str,
    version: str,
    results: Mapping[str, Explanation],
    cpus: float | None,
    gpus: float | None = None,
) -> Explanation:
    """A whole step, in a Ray worker, through the same ``run_explainer`` as locally."""
    from ..step import run_step

    _in_worker(cpus, gpus, model)
    cls, params = spec
    return run_step(cls(params, results=results), model, data, target=target, seed=seed, distribution=distribution, version=version)


class RayExecutor:
    """Runs chunks and steps as Ray tasks (see the module docstring and :mod:`aeinterp.run.executors`)."""

    kind = "ray"
    #: the runner may run independent steps at the same time on this executor
    concurrent_steps = True

    def __init__(
        self,
        address: str = "auto",
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        max_retries: int = 2,
        max_in_flight: int | None = None,
        data_from_path: bool = True,
        connect_timeout: float = 30.0,
    ) -> None:
        self.address = address
        self.connect_timeout = float(connect_timeout)
        self.data_from_path = bool(data_from_path)
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = int(max_retries)
        self.max_in_flight = max_in_flight
        self._ray: Any = None
        self._lock = threading.Lock()
        self._puts: dict[int, tuple[Any, Any]] = {}  # id(obj) -> (obj, ref); obj kept so its id stays unique
        self._inflight: set[Any] = set()
        self._owned: dict[int, set[Any]] = {}  # id(explainer) -> its tasks in flight (a step's timeout cancels them)
        self._stopped: set[int] = set()  # explainers whose step timed out: they submit nothing more
        self._cancelled = False

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus}, num_gpus={self.num_gpus}, max_retries={self.max_retries})"

    # --- connection ------------------------------------------------------------------
    def connect(self) -> Any:
        """Import Ray and join (or start) the cluster; returns the ``ray`` module."""
        if self._ray is not None:
            return self._ray
        ray = require("ray", "ray", "the ray executor")
        with _CONNECT_LOCK:  # steps starting together: the first connects, the others wait for it and reuse the connection
            if self._ray is not None:
                return self._ray
            if not ray.is_initialized():
                self.check_reachable()
                kwargs: dict[str, Any] = {"log_to_driver": False}
                if self.address == "local":  # a cluster for this run only: no dashboard, reachable from this machine only
                    kwargs.update(include_dashboard=False, _node_ip_address="127.0.0.1")
                try:
                    ray.init(address=None if self.address == "auto" else self.address, **kwargs)
                except (ConnectionError, TimeoutError) as exc:
                    raise RayConnectionError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
            options = {
                "num_cpus": self.num_cpus or 1,
                "num_gpus": self.num_gpus or 0,
                "max_retries": self.max_retries,
                "retry_exceptions": False,
            }
            self._chunk_remote = ray.remote(_chunk_task).options(**options)
            self._step_remote = ray.remote(_step_task).options(**options)
            self._ray = ray
        return ray

    def check_reachable(self) -> None:
        """Fail fast (:class:`RayConnectionError`) when nothing answers at the address (Ray itself would retry for minutes)."""
        address = os.environ.get("RAY_ADDRESS", "") if self.address == "auto" else self.address
        target = _host_port(address) if address not in ("", "auto", "local") else None
        if target is None:
            return
        try:
            with socket.create_connection(target, timeout=self.connect_timeout):
                pass
        except OSError as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
            where = f" (from RAY_ADDRESS={address})" if self.address == "auto" else ""
            raise RayConnectionError(
                f"cannot reach the Ray cluster at {address}{where}: {why} within {self.connect_timeout:g} s; "
                "start it (`ray start --head`), correct executor.address, or use address: local for a cluster on this machine"
            ) from None

    @property
    def workers(self) -> int:
        """Tasks that can run at once: the cluster's CPUs over each task's ``num_cpus``."""
        ray = self.connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1) // (self.num_cpus or 1)))

    def put(self, obj: Any) -> Any:
        """A reference to ``obj`` in the object store, put there once for this executor's lifetime."""
        self.connect()
        with self._lock:
            hit = self._puts.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
        region = file_region(obj.x) if self.data_from_path and isinstance(obj, ArrayDataset) else None
        ref = self._put_new(on_cpu(obj) if region is None else ByPath(obj, region))
        with self._lock:
            self._puts[id(obj)] = (obj, ref)
        return ref

    def _model_ref(self, model: Any) -> Any:
        """The model in the object store (its tensors on the CPU), once its device and the tasks' GPUs agree."""
        device = getattr(model, "device", None)
        if getattr(device, "type", "cpu") != "cpu" and not self.num_gpus:
            raise RuntimeError(
                f"the model runs on {device} (device:), but the Ray tasks ask for no GPU (executor num_gpus unset or 0): "
                "set num_gpus (1, or 0.5 for two tasks per GPU) or device: cpu"
            )
        if self.num_gpus:
            have = self.connect().cluster_resources().get("GPU", 0)
            if have < self.num_gpus:
                raise RuntimeError(
                    f"executor num_gpus is {self.num_gpus:g}, but the Ray cluster has {have:g} GPU(s): its tasks would never start; lower num_gpus or add GPU nodes"
                )
        return self.put(model)

    def _put_new(self, obj: Any) -> Any:
        try:
            return self.connect().put(obj)
        except Exception as exc:
            raise TypeError(
                f"{type(obj).__name__} cannot be sent to Ray workers ({type(exc).__name__}: {exc}); run with the local executor"
            ) from exc

    def release(self) -> None:
        """Forget the objects put for earlier steps (the runner calls it at the end of a run)."""
        with self._lock:
            self._puts.clear()
            self._owned.clear()
            self._stopped.clear()
            self._cancelled = False

    def cancel_step(self, explainer: Any) -> None:
        """Stop one step (its timeout ran out): its tasks are cancelled, forcing their workers to stop, and it submits no more."""
        with self._lock:
            self._stopped.add(id(explainer))
            refs = list(self._owned.pop(id(explainer), ()))
        for ref in refs:
            try:
                self._ray.cancel(ref, force=True, recursive=True)
            except Exception:  # already finished or lost
                pass

    def cancel_all(self) -> None:
        """Cancel every task in flight (Ctrl-C); their steps end with ``KeyboardInterrupt``."""
        with self._lock:
            self._cancelled = True
            refs = list(self._inflight)
        for ref in refs:
            try:
                self._ray.cancel(ref, recursive=True)
            except Exception:  # already finished or lost: nothing left to cancel
                pass

    # --- results and their failures --------------------------------------------------
    def _submit(self, remote: Any, *args: Any, owner: Any = None) -> Any:
        with self._lock:
            if self._cancelled:
                raise KeyboardInterrupt
            if owner is not None and id(owner) in self._stopped:
                raise StepTimeout(
                    f"step {getattr(owner, 'name', '?')!r} ran past its timeout; its tasks were cancelled",
                    plugin=getattr(owner, "name", None),
                )
            ref = remote.remote(*args)
            self._inflight.add(ref)
            if owner is not None:
                self._owned.setdefault(id(owner), set()).add(ref)
        return ref

    def _get(self, ref: Any, what: str) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            raise KeyboardInterrupt from None
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            where = f"raised in a Ray worker (pid {getattr(err, 'pid', '?')}, {getattr(err, 'ip', '?')}) running {what}"
            if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                cause.add_note(f"{where}; worker traceback:\n{getattr(err, 'traceback_str', '')}")
                raise cause from None
            if isinstance(cause, ray.exceptions.RaySystemError):  # an argument could not be unpickled there, e.g. the data file
                first = str(cause).strip().splitlines()[0].removeprefix("System error: ")
                raise RuntimeError(f"{where}: its inputs could not be read there: {first}") from None
            raise RuntimeError(f"{where}: {err}") from None
        except _LOST(ray) as err:  # the worker or its node died, also on every retry
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ChunkLostError(
                f"{what} was lost: its Ray worker died, and so did the {self.max_retries} re-run(s) Ray allows "
                f"(executor max_retries) [{type(err).__name__}: {first}]"
            ) from None
        except ray.exceptions.RayError as err:  # Ray itself failed (e.g. an error it could not deserialize)
            raise RuntimeError(f"Ray failed running {what}: {type(err).__name__}: {err}") from None
        finally:
            with self._lock:
                self._inflight.discard(ref)
                for refs in self._owned.values():
                    refs.discard(ref)

    # --- the Executor protocol ---------------------------------------------------------
    def map_chunks(
        self,
        explainer: ChunkedExplainer,
        model: Any,
        data: Any,
        state: Any,
        chunks: Sequence[np.ndarray],
        *,
        target: Target,
        base_seed: int,
    ) -> Iterator[Partial]:
        """Every chunk as a task (at most ``max_in_flight`` queued at once); partials yielded in chunk order."""
        ray = self.connect()
        n = len(chunks)
        refs = (
            self._put_new((type(explainer), explainer.params)),
            self._model_ref(model),
            self.put(data),
            self._put_new(tensors_to(state, "cpu")),
        )
        window = self.max_in_flight or max(2, 2 * self.workers)
        pending: dict[Any, int] = {}
        ready: dict[int, Partial] = {}
        submitted = emitted = 0

        def completions() -> Iterator[tuple[int, Partial]]:
            nonlocal submitted
            while submitted < n or pending:
                while submitted < n and len(pending) < window:
                    units = np.asarray(chunks[submitted])
                    pending[
                        self._submit(
                            self._chunk_remote,
                            *refs,
                            units,
                            submitted,
                            int(base_seed),
                            Target(target).value,
                            self.num_cpus,
                            self.num_gpus,
                            owner=explainer,
                        )
                    ] = submitted
                    submitted += 1
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    yield i, self._get(ref, f"chunk {i + 1} of {n} of {explainer.name}")

        label = f"{explainer.capabilities.splits} chunks on ray"
        try:
            for i, partial in explainer.progress.track(completions(), total=n, description=label):
                ready[i] = partial
                while emitted in ready:
                    yield ready.pop(emitted)
                    emitted += 1
        finally:
            for ref in pending:  # a failed chunk or Ctrl-C: the step's other tasks are not needed
                try:
                    ray.cancel(ref)
                except Exception:
                    pass
            with self._lock:
                self._inflight.difference_update(pending)

    def run_explainer(
        self, explainer: Explainer, model: Any, data: Any, *, target: Target, seed: int, distribution: str = "", version: str = ""
    ) -> Explanation:
        """One step: a chunked explainer fans its chunks out from here; any other runs whole as one task."""
        from ..step import run_step

        if isinstance(explainer, ChunkedExplainer):
            explainer.executor = self  # type: ignore[assignment]
            return run_step(explainer, model, data, target=target, seed=seed, distribution=distribution, version=version)
        self.connect()
        ref = self._submit(
            self._step_remote,
            self._put_new((type(explainer), explainer.params)),
            self._model_ref(model),
            self.put(data),
            Target(target).value,
            int(seed),
            distribution,
            version,
            dict(explainer.results),
            self.num_cpus,
            self.num_gpus,
            owner=explainer,
        )
        for _ in explainer.progress.track([ref], total=1, description="on ray"):
            return self._get(ref, f"step {explainer.name}")
        raise AssertionError("unreachable")  # pragma: no cover
