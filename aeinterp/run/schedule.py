"""When steps run: one after another, all at once as their dependencies finish, or abandoned at a timeout.

:func:`run_concurrently` is the schedule of an executor with
``concurrent_steps`` (Ray): every step whose :data:`~aeinterp.StepRef`
dependencies have finished starts at once, and ``results.json`` still lists
the steps in recipe order. :func:`with_timeout` runs a step with a
``timeout`` in a worker thread that is abandoned when the time is up;
:func:`sigterm_as_interrupt` makes SIGTERM stop a run like Ctrl-C, so the
finished steps are kept.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import StepTimeout
from ..explanation import Explanation
from ..model import Model, frozen
from ..recipe.schema import PlannedStep
from .keys import StepKeys, step_dependencies
from .record import Recorder

__all__ = ["sigterm_as_interrupt", "with_timeout", "run_concurrently"]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while inside (main thread only), so results are written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def with_timeout(fn: Callable[[], Any], timeout: float | None, what: str) -> Any:
    """``fn()``, or :class:`StepTimeout` after ``timeout`` seconds (the worker thread is abandoned)."""
    if timeout is None:
        return fn()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"aeinterp-step-{what}", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(min(0.1, max(0.0, deadline - time.monotonic())))  # short joins keep Ctrl-C responsive
    if worker.is_alive():
        raise StepTimeout(
            f"step {what!r} did not finish within its timeout of {timeout:g} s and was abandoned "
            "(it may keep using CPU until aeinterp exits); raise `timeout:` for this step or --timeout",
            plugin=what,
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_concurrently(
    steps: list[PlannedStep],
    executor: Any,
    model: Model,
    data: Any,
    seed: int,
    recorder: Recorder,
    progress: Any,
    keying: StepKeys | None = None,
    *,
    timeout: float | None = None,
) -> None:
    """Every step whose dependencies have finished runs at once on ``executor`` (driver threads wait on its tasks).

    A step sees the results of the steps its StepRef params name (finished
    or failed, as in a local run). A step found in the cache (``keying``)
    finishes as it starts, without a task; a computed one is saved to the
    cache as it finishes. Finished steps are written to
    ``results.json`` in recipe order: a step that finishes before an
    earlier one waits for it, except on Ctrl-C or an error, where every
    finished step is written before the tasks in flight are cancelled.
    A step past its ``timeout:`` (or ``timeout``, the run's default) has its
    tasks cancelled and fails alone; the run goes on.
    """
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    outcome = recorder.outcome
    needs = step_dependencies(steps)
    waiting: list[PlannedStep] = list(steps)
    running: dict[Future[Explanation], PlannedStep] = {}
    deadlines: dict[Future[Explanation], tuple[float, float, Any]] = {}  # a step's timeout: (deadline, seconds, explainer)
    finished: dict[str, tuple[Explanation | None, BaseException | None]] = {}
    keys: dict[str, str | None] = {}  # cache keys of the started steps
    from_cache: set[str] = set()
    written = 0

    def write(upto: int) -> None:  # results.json in recipe order, up to the first unfinished step (or all: len)
        nonlocal written
        for step in steps[written:upto]:
            if step.alias in finished:
                explanation, exc = finished[step.alias]  # dropped only once written: a Ctrl-C inside write() loses nothing
                if exc is not None:
                    recorder.failure(step, exc)  # type: ignore[arg-type]
                else:  # saved to the cache as it finished (harvest): its dependents' keys needed it then
                    recorder.record(step, explanation, cached=step.alias in from_cache)  # type: ignore[arg-type]
                del finished[step.alias]
        written = max(written, upto)

    done_aliases: set[str] = set()

    def finish(step: PlannedStep, explanation: Explanation | None, exc: BaseException | None, cached: bool = False) -> None:
        finished[step.alias] = (explanation, exc)
        if explanation is not None:
            outcome.explanations[step.alias] = explanation  # for the steps that name it
            key = keys.get(step.alias)
            if keying is not None and key is not None:
                keying.save(step, key, explanation, cached=cached)
            if cached:
                from_cache.add(step.alias)
        done_aliases.add(step.alias)

    def harvest(fut: Future[Explanation]) -> None:  # a done future becomes a finished step; it leaves `running` last
        exc = fut.exception()
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        step = running[fut]
        finish(step, None if exc is not None else fut.result(), exc)
        del running[fut]

    def start(step: PlannedStep) -> None:
        waiting.remove(step)
        if keying is not None:
            keys[step.alias], hit = keying.lookup(step)
            if hit is not None:
                finish(step, hit, None, cached=True)
                return
        entry = step.explainer
        if hasattr(executor, "connect"):  # once, here in the runner's thread: Ray's connection must not be made by a step thread
            executor.connect()
        results = {a: outcome.explanations[a] for a in needs[step.alias] if a in outcome.explanations}
        instance = entry.cls(step.params, progress=progress.view(f"{step.alias}: "), results=results)
        fut = pool.submit(
            executor.run_explainer,
            instance,
            model,
            data,
            target=step.target,
            seed=seed,
            distribution=entry.distribution,
            version=entry.version,
        )
        running[fut] = step
        seconds = step.timeout if step.timeout is not None else timeout
        if seconds is not None:
            deadlines[fut] = (time.monotonic() + seconds, seconds, instance)

    abandoned: set[Future[Explanation]] = set()

    def expire() -> None:  # steps past their timeout: their tasks cancelled, the step failed, the run goes on
        now = time.monotonic()
        for fut, (deadline, seconds, instance) in list(deadlines.items()):
            if fut.done():
                deadlines.pop(fut)
            elif now >= deadline:
                deadlines.pop(fut)
                step = running.pop(fut)
                if hasattr(executor, "cancel_step"):
                    executor.cancel_step(instance)
                abandoned.add(fut)
                finish(
                    step,
                    None,
                    StepTimeout(
                        f"step {step.alias!r} did not finish within its timeout of {seconds:g} s; its tasks were cancelled "
                        "(raise `timeout:` for this step or --timeout)",
                        plugin=step.alias,
                    ),
                )

    pool = ThreadPoolExecutor(max_workers=max(1, min(len(steps), 32)), thread_name_prefix="aeinterp-step")
    try:
        with progress, frozen(model):  # frozen once here: the steps' own nested frozen() then change nothing
            while waiting or running:
                while ready := [s for s in waiting if needs[s.alias] <= done_aliases]:  # a cached step readies its dependents at once
                    for step in ready:
                        start(step)
                next_deadline = min((d for d, _, _ in deadlines.values()), default=None)
                wait_for = None if next_deadline is None else max(0.0, next_deadline - time.monotonic())
                done, _ = wait(running, timeout=wait_for, return_when=FIRST_COMPLETED) if running else (set(), set())
                for fut in done:
                    deadlines.pop(fut, None)
                    harvest(fut)
                expire()
                first_open = next((i for i, s in enumerate(steps) if s.alias not in done_aliases), len(steps))
                write(first_open)
    except BaseException:
        for fut in [f for f in running if f.done() and not f.cancelled() and not isinstance(f.exception(), KeyboardInterrupt)]:
            harvest(fut)  # finished while Ctrl-C arrived: keep it
        executor.cancel_all()
        pool.shutdown(wait=False, cancel_futures=True)
        write(len(steps))  # keep every finished step, even after an unfinished one
        raise
    pool.shutdown(wait=not abandoned)  # a timed-out step's driver thread is not waited for
