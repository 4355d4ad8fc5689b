"""The runner: recipe -> data + model -> each explainer step -> results -> reports.

It knows no explainer by name. A failing step is recorded (which plugin,
which distribution, the error) and the run goes on; the outcome says whether
anything failed, and the CLI turns that into the exit code.

Steps run where the executor says (:mod:`aeinterp.run.executors`): the ``local``
one runs them one after another in this process; one with
``concurrent_steps`` (Ray) gets every step whose :data:`~aeinterp.StepRef`
dependencies have finished at the same time, and ``results.json`` still lists
the steps in recipe order.
A step with a
``timeout`` runs in a worker thread that is abandoned when the time is up (the
step is recorded as failed). SIGTERM is handled like Ctrl-C: the run stops,
``results.json`` says ``interrupted`` and keeps the finished steps.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from .cache import Cache, data_fingerprint, model_fingerprint
from ..toolkit.checks import check_finite_outputs
from ..toolkit.chunks import ChunkedExplainer
from ..data import SPLIT_FILE, ArrayDataset
from ..io.datasets import load_dataset
from ..device import device_name, resolve_device
from ..errors import AeinterpError, DataError, RecipeError, StepTimeout
from .executors import make_executor
from ..explainer import step_ref_fields
from ..explanation import Explanation
from ..models.loading import adapt, build_builtin, load_module
from ..model import TorchAutoencoder, frozen
from ..plugins.manager import PluginHost
from ..progress import NullProgress, RichProgress
from ..recipe.schema import LoadedRecipe, PlannedStep, dump_recipe, load_recipe, plan_steps, resolve
from ..plugins.registry import ExplainerRegistry
from .results import ResultsStore, RunResults
from .step import run_step
from ..models.training import TrainConfig

__all__ = ["Runner", "RunOutcome", "RunInterrupted"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; ``results`` is the results.json written so far, or None."""

    def __init__(self, results: Path | None) -> None:
        self.results = results
        super().__init__(f"interrupted; finished steps are in {results}" if results else "interrupted before any result was written")


def marks(console: Console) -> tuple[str, str]:
    """The ok / failed marks: check marks where the terminal can print them, plain words elsewhere."""
    encoding = (getattr(console, "encoding", "") or "").lower().replace("_", "-")
    return ("✓", "✗") if encoding.startswith("utf") else ("ok", "FAILED")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
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


def _with_timeout(fn: Callable[[], Any], timeout: float | None, what: str) -> Any:
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


@dataclass
class RunOutcome:
    out_dir: Path
    explanations: dict[str, Explanation] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class Runner:
    """Runs recipes with its own plugin host (see :class:`aeinterp.plugins.PluginHost` for the switches).

    ``console`` receives the terminal report and progress bars (default: stdout);
    pass ``rich.Console(file=io.StringIO())`` to capture it, or ``quiet=True``.
    ``executor`` (an executor, ``"local"``, ``"ray"`` or an ``executor:`` mapping)
    replaces the recipe's ``executor:`` section for every run.
    ``device`` overrides the recipe's ``device:``; ``cache`` overrides its
    ``cache:`` (``False`` turns caching off, a path names the cache folder).
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        allow: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        plugins: Iterable[Any] = (),
        trace: bool | None = None,
        console: Console | None = None,
        quiet: bool = False,
        executor: Any = None,
        device: str | None = None,
        cache: bool | str | Path | None = None,
        timeout: float | None = None,
        trusted_factories: Iterable[str] = (),
    ) -> None:
        self.host = PluginHost(autoload=autoload, allow=allow, block=block, plugins=plugins, trace=trace)
        self.executor = executor
        self.console = console or Console()
        self.quiet = quiet
        self.device = device
        self.cache = cache
        #: seconds after which a step without its own ``timeout`` is abandoned (None: never)
        self.timeout = timeout
        #: ``package.module:name`` factories that recipes may call although they are no nn.Module class
        self.trusted_factories = tuple(trusted_factories)

    @property
    def registry(self) -> ExplainerRegistry:
        return self.host.registry

    # --- validation ----------------------------------------------------------------
    def validate(self, path: str | Path, overrides: Sequence[str] = ()) -> tuple[LoadedRecipe, list[PlannedStep]]:
        """Both passes of validation, without loading data or model."""
        loaded = load_recipe(path, overrides, registry=self.registry)
        return loaded, plan_steps(loaded, self.registry)

    # --- running -------------------------------------------------------------------
    def run_file(self, path: str | Path, *, out: str | Path | None = None, overrides: Sequence[str] = ()) -> RunOutcome:
        loaded, steps = self.validate(path, overrides)
        return self.run(loaded, steps, out=out)

    def _progress(self, prefix: str = "") -> NullProgress | RichProgress:
        if self.quiet or not self.console.is_terminal:  # no bars in logs and captured output
            return NullProgress()
        return RichProgress(self.console, prefix=prefix)

    def load_data(self, loaded: LoadedRecipe) -> ArrayDataset:
        d = loaded.recipe.data
        base = loaded.base_dir
        path = resolve(base, d.path)
        if path is not None and path.is_dir():
            raise DataError(f"data.path {path} is a folder; give a data file (.csv, .npy, .npz, .parquet or .h5ad)")
        try:
            return load_dataset(
                path=path, builtin=d.builtin, kind=d.kind, feature_names=d.feature_names,
                label=d.label, key=d.key if d.layer is None else d.layer, groups=d.groups, explain_fraction=d.split.explain_fraction,
                explain_size=d.split.explain_size, split_seed=d.split.seed, standardize=d.standardize, nan=d.nan,
                max_samples=d.max_samples, encoding=d.encoding, fit_path=resolve(base, d.fit_path), explain_path=resolve(base, d.explain_path),
                split_column=d.split.column, explain_values=d.split.values("explain") or ("test",), fit_values=d.split.values("fit"),
                explain_rows=d.split.explain_rows, fit_rows=d.split.fit_rows, base_dir=base,
            )
        except (AeinterpError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # a reader tripping over a damaged file is still bad input
            where = path if path is not None else f"builtin {d.builtin}"
            raise DataError(f"cannot read the data {where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (is the file complete and of the format its name says?)") from None

    def resolve_cache(self, loaded: LoadedRecipe) -> Cache | None:
        """The cache this run uses (the Runner's ``cache`` over the recipe's ``cache:``), or None."""
        setting = self.cache if self.cache is not None else loaded.recipe.cache
        if setting is False:
            return None
        if setting is True:
            return Cache()
        return Cache(resolve(loaded.base_dir, str(setting)))

    def _say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def load_model(
        self, loaded: LoadedRecipe, data: ArrayDataset, out_dir: Path, *, device: Any = None, cache: Cache | None = None, data_hash: str | None = None,
    ) -> tuple[TorchAutoencoder, dict[str, Any]]:
        m = loaded.recipe.model
        device = resolve_device(device if device is not None else (self.device or loaded.recipe.device))
        info: dict[str, Any] = {"device": device_name(device)}
        if m.builtin is not None:
            key = None
            hit = None
            if cache is not None:
                section = m.model_dump(mode="json", include={"builtin", "latent_dim", "options", "train"})
                key = cache.model_key(section, seed=loaded.recipe.seed, data_hash=data_hash or data_fingerprint(data), device=device.type)
                hit = cache.load_model(key, device)
            if hit is not None:
                module, training = hit
                info.update(source=f"builtin:{getattr(module, 'architecture', m.builtin)}", training=training, cached=True)
                self._say(f"model: builtin {getattr(module, 'architecture', m.builtin)} from the cache (cached; trained {training.get('epochs')} epochs earlier)")
            else:
                progress = self._progress("model: ")
                with progress:
                    module, trained = build_builtin(
                        m.builtin, data, latent_dim=int(m.latent_dim or 0), options=m.options,
                        train=TrainConfig(**m.train.model_dump(), seed=loaded.recipe.seed), progress=progress, device=device,
                    )
                info.update(source=f"builtin:{getattr(module, 'architecture', m.builtin)}", training=trained.to_json())
                if cache is not None and key is not None:
                    cache.save_model(key, module, trained.to_json())
            if m.save:
                import torch

                target = resolve(out_dir, m.save)
                if target is None or not target.is_relative_to(out_dir.resolve()):
                    raise RecipeError(f"model.save {m.save!r} points outside the output folder {out_dir}")
                target.parent.mkdir(parents=True, exist_ok=True)
                torch.save(module.checkpoint(), target)
                info["saved"] = str(target)
        else:
            path = resolve(loaded.base_dir, m.path)
            assert path is not None  # the recipe schema guarantees path or builtin
            module = load_module(
                path, format=m.format, factory=m.factory, kwargs=m.kwargs, trust=m.trust, base_dir=loaded.base_dir,
                device=device, trusted_factories=self.trusted_factories,
            )
            info["source"] = str(path)
        model = adapt(
            module, data, encoder=m.encoder, decoder=m.decoder, code=m.code, head=m.head, task_dims=m.task_dims,
            description=type(module).__name__, device=device, base_dir=loaded.base_dir, trusted_factories=self.trusted_factories,
        )
        info.update(description=model.description, latent_dim=model.latent_dim, input_shape=list(model.input_shape))
        if model.task_dims is not None:
            info.update(task_dims=model.task_dims, class_names=model.class_names)
        return model, info

    def run(self, loaded: LoadedRecipe, steps: list[PlannedStep] | None = None, *, out: str | Path | None = None) -> RunOutcome:
        """Run a validated recipe. Raises :class:`AeinterpError` for bad data or model;
        failures of single steps are recorded in the outcome instead."""
        steps = steps if steps is not None else plan_steps(loaded, self.registry)
        recipe = loaded.recipe
        out_dir = Path(out) if out is not None else resolve(loaded.base_dir, recipe.output)
        if out_dir is None:  # pragma: no cover - the recipe always has an output
            raise RecipeError("no output folder")
        if out_dir.exists() and not out_dir.is_dir():
            raise RecipeError(f"the output folder {out_dir} is a file; name a folder for the results (--out or `output:`)")
        with _sigterm_as_interrupt():
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                device = resolve_device(self.device or recipe.device)
                cache = self.resolve_cache(loaded)
                data = self.load_data(loaded)
                data_hash = data_fingerprint(data) if cache is not None else None
                model, model_info = self.load_model(loaded, data, out_dir, device=device, cache=cache, data_hash=data_hash)
                for target in dict.fromkeys(s.target for s in steps):  # NaN outputs fail the run before any step
                    check_finite_outputs(model, data, target)
            except KeyboardInterrupt:
                raise RunInterrupted(None) from None
            except OSError as exc:
                raise AeinterpError(f"cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None
            store = ResultsStore(out_dir, recipe=dump_recipe(recipe), model=model_info, data=data.describe(), plugins=[i.to_json() for i in self.host.infos])
            np.savez(out_dir / SPLIT_FILE, **data.split_arrays())  # which rows were explained, which were fit/background
            outcome = RunOutcome(out_dir=out_dir)
            executor = make_executor(self.executor if self.executor is not None else recipe.executor)
            keying = None
            if cache is not None:
                keying = _StepKeys(cache, data_hash=data_hash or "", model_hash=model_fingerprint(model), device=device.type, seed=recipe.seed)
            status = "interrupted"
            try:
                if getattr(executor, "concurrent_steps", False):
                    self._run_concurrently(steps, executor, model, data, recipe.seed, store, outcome, keying)
                else:
                    for step in steps:
                        self._run_step(step, model, data, recipe.seed, store, outcome, keying)
                status = "failed" if outcome.failures else "complete"
            except KeyboardInterrupt:
                raise RunInterrupted(out_dir / "results.json") from None
            finally:
                if hasattr(executor, "release"):
                    executor.release()
                store.finish(status)
        if status != "interrupted":
            from ..report import render_reports

            results = RunResults(out_dir=out_dir, doc=store.doc, explanations=outcome.explanations)
            try:
                outcome.reports = render_reports(results, self.registry, console=None if self.quiet else self.console, options=recipe.report, data=data, cache=cache)
            except Exception as exc:  # the results are on disk already; a report bug must not hide them
                warnings.warn(f"writing the reports failed ({type(exc).__name__}: {exc}); the results are in {out_dir / 'results.json'}, retry with `aeinterp report {out_dir}`", stacklevel=2)
            if data.info.get("source") == "h5ad" and outcome.explanations:  # scverse users read results back into their AnnData
                from ..anndata_out import RESULTS_H5AD, write_results_h5ad

                try:
                    write_results_h5ad(out_dir / RESULTS_H5AD, data, outcome.explanations, run={"recipe": dump_recipe(recipe), "model": model_info})
                    outcome.reports.append(out_dir / RESULTS_H5AD)
                except Exception as exc:  # the results are on disk already
                    warnings.warn(f"writing {RESULTS_H5AD} failed ({type(exc).__name__}: {exc}); the results are in {out_dir / 'results.json'}", stacklevel=2)
        return outcome

    def _run_step(
        self, step: PlannedStep, model: TorchAutoencoder, data: ArrayDataset, seed: int, store: ResultsStore, outcome: RunOutcome, keying: _StepKeys | None = None,
    ) -> None:
        entry = step.explainer
        key, cached = keying.lookup(step) if keying is not None else (None, None)
        if cached is not None:
            self._record(step, cached, store, outcome, keying, key, cached=True)
            return
        timeout = step.timeout if step.timeout is not None else self.timeout
        progress = self._progress(f"{step.alias}: ") if timeout is None else NullProgress()  # no live bar from a thread that may be abandoned
        instance = entry.cls(step.params, progress=progress, results=outcome.explanations)
        if isinstance(instance, ChunkedExplainer):
            instance.rows_dir = store.out_dir  # per-sample rows spilled to disk land next to results.json
        try:
            with progress:
                explanation = _with_timeout(
                    lambda: run_step(
                        instance, model, data, target=step.target, seed=seed,
                        distribution=entry.distribution, version=entry.version,
                    ),
                    timeout, step.alias,
                )
            self._record(step, explanation, store, outcome, keying, key)
        except Exception as exc:  # one failing step must not lose the others (a result that cannot be written fails alone)
            self._record_failure(step, exc, store, outcome)

    def _record_failure(self, step: PlannedStep, exc: Exception, store: ResultsStore, outcome: RunOutcome) -> None:
        entry = step.explainer
        tb = "".join(traceback.format_exception(exc.__cause__ or exc)) if not isinstance(exc, AeinterpError) or exc.__cause__ or getattr(exc, "__notes__", None) else ""
        failure = store.add_error(
            step.alias, entry.name, step.target.value, exc, params=step.params.model_dump(mode="json"),
            distribution=entry.distribution, version=entry.version, traceback=tb,
        )
        outcome.failures.append(failure)
        if not self.quiet:
            _, fail_mark = marks(self.console)
            self.console.print(
                f"[red]{fail_mark} {escape(step.alias)}[/red] ({escape(entry.name)} from {escape(entry.distribution)} {escape(entry.version)}): {escape(str(exc))}",
                highlight=False, soft_wrap=True,
            )

    def _record(
        self, step: PlannedStep, explanation: Explanation, store: ResultsStore, outcome: RunOutcome,
        keying: _StepKeys | None = None, key: str | None = None, *, cached: bool = False,
    ) -> None:
        """Write a finished (or ``cached``) step to ``results.json``, keep it for later steps, and save it to the cache."""
        entry = step.explainer
        store.add(step.alias, explanation, **({"cached": True} if cached else {}))
        outcome.explanations[step.alias] = explanation
        if keying is not None and key is not None:
            keying.save(step, key, explanation, cached=cached)
        label = step.alias if step.alias == entry.name else f"{step.alias} ({entry.name})"
        if cached:
            ok_mark, _ = marks(self.console)
            took = f" (computed in {explanation.runtime_s:.2f} s)" if explanation.runtime_s is not None else ""
            self._say(f"{ok_mark} {label} on {step.target.value}: cached{took}")
        elif not self.quiet:
            ok_mark, _ = marks(self.console)
            self.console.print(f"[green]{ok_mark} {escape(label)}[/green] on {step.target.value} in {explanation.runtime_s:.2f} s", highlight=False)

    def _run_concurrently(
        self, steps: list[PlannedStep], executor: Any, model: TorchAutoencoder, data: ArrayDataset, seed: int,
        store: ResultsStore, outcome: RunOutcome, keying: _StepKeys | None = None,
    ) -> None:
        """Every step whose dependencies have finished runs at once on ``executor`` (driver threads wait on its tasks).

        A step sees the results of the steps its StepRef params name (finished
        or failed, as in a local run). A step found in the cache (``keying``)
        finishes as it starts, without a task; a computed one is saved to the
        cache as it finishes. Finished steps are written to
        ``results.json`` in recipe order: a step that finishes before an
        earlier one waits for it, except on Ctrl-C or an error, where every
        finished step is written before the tasks in flight are cancelled.
        """
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        needs = step_dependencies(steps)
        waiting: list[PlannedStep] = list(steps)
        running: dict[Future[Explanation], PlannedStep] = {}
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
                        self._record_failure(step, exc, store, outcome)  # type: ignore[arg-type]
                    else:  # saved to the cache as it finished (harvest): its dependents' keys needed it then
                        self._record(step, explanation, store, outcome, cached=step.alias in from_cache)  # type: ignore[arg-type]
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
            results = {a: outcome.explanations[a] for a in needs[step.alias] if a in outcome.explanations}
            instance = entry.cls(step.params, progress=progress.view(f"{step.alias}: "), results=results)
            running[pool.submit(
                executor.run_explainer, instance, model, data, target=step.target, seed=seed,
                distribution=entry.distribution, version=entry.version,
            )] = step

        pool = ThreadPoolExecutor(max_workers=max(1, min(len(steps), 32)), thread_name_prefix="aeinterp-step")
        progress = self._progress()
        try:
            with progress, frozen(model):  # frozen once here: the steps' own nested frozen() then change nothing
                while waiting or running:
                    while ready := [s for s in waiting if needs[s.alias] <= done_aliases]:  # a cached step readies its dependents at once
                        for step in ready:
                            start(step)
                    done, _ = wait(running, return_when=FIRST_COMPLETED) if running else (set(), set())
                    for fut in done:
                        harvest(fut)
                    first_open = next((i for i, s in enumerate(steps) if s.alias not in done_aliases), len(steps))
                    write(first_open)
        except BaseException:
            for fut in [f for f in running if f.done() and not f.cancelled() and not isinstance(f.exception(), KeyboardInterrupt)]:
                harvest(fut)  # finished while Ctrl-C arrived: keep it
            executor.cancel_all()
            pool.shutdown(wait=False, cancel_futures=True)
            write(len(steps))  # keep every finished step, even after an unfinished one
            raise
        pool.shutdown(wait=True)


def step_refs(params: Any) -> list[str]:
    """The aliases a step's StepRef params name (a single alias or a list of them)."""
    refs: list[str] = []
    for f in step_ref_fields(type(params)):
        value = getattr(params, f, None)
        refs += [str(v) for v in value] if isinstance(value, (list, tuple)) else ([str(value)] if value is not None else [])
    return refs


def step_dependencies(steps: Sequence[PlannedStep]) -> Mapping[str, frozenset[str]]:
    """For each step's alias, the aliases of the steps its StepRef params name (the dependency graph)."""
    aliases = {s.alias for s in steps}
    return {
        s.alias: frozenset(ref for ref in step_refs(s.params) if ref in aliases)
        for s in steps
    }

class _StepKeys:
    """Cache keys of a run's steps; a step reading earlier steps (``StepRef``) includes their keys."""

    def __init__(self, cache: Cache, *, data_hash: str, model_hash: str, device: str, seed: int) -> None:
        self.cache, self.data_hash, self.model_hash, self.device, self.seed = cache, data_hash, model_hash, device, seed
        self.finished: dict[str, str] = {}

    def key(self, step: PlannedStep) -> str | None:
        depends = []
        for ref in step_refs(step.params):
            if ref not in self.finished:  # the step it reads failed: nothing to reuse
                return None
            depends.append(f"{ref}={self.finished[ref]}")
        e = step.explainer
        return self.cache.step_key(
            name=e.name, distribution=e.distribution, version=e.version, params=step.params.model_dump(mode="json"), seed=self.seed,
            target=step.target.value, data_hash=self.data_hash, model_hash=self.model_hash, device=self.device, depends_on=depends,
        )

    def lookup(self, step: PlannedStep) -> tuple[str | None, Explanation | None]:
        """The step's key and its cached result (``None`` where there is none, or the steps it reads have no key)."""
        key = self.key(step)
        return key, (self.cache.load_step(key) if key is not None else None)

    def save(self, step: PlannedStep, key: str, explanation: Explanation, *, cached: bool = False) -> None:
        """Store a computed result under its key (a ``cached`` one is there already); the steps reading it can now be keyed."""
        if not cached:
            e = step.explainer
            self.cache.save_step(key, explanation, inputs={"alias": step.alias, "explainer": e.name, "target": step.target.value})
        self.finished[step.alias] = key
