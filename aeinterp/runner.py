"""The runner: recipe -> data + model -> each explainer step -> results -> reports.

The user-facing way to run recipes from Python (the CLI is a thin layer over
it). It knows no explainer by name. The parts live in :mod:`aeinterp.run`:
reading data and model (:mod:`~aeinterp.run.prepare`), cache keys
(:mod:`~aeinterp.run.keys`), when steps run (:mod:`~aeinterp.run.schedule`:
one after another, all at once on an executor with ``concurrent_steps``, or
abandoned at a ``timeout``), one step (:mod:`~aeinterp.run.step`) and
recording it (:mod:`~aeinterp.run.record`). A failing step is recorded
(which plugin, which distribution, the error) and the run goes on; the
outcome says whether anything failed, and the CLI turns that into the exit
code. SIGTERM is handled like Ctrl-C: the run stops, ``results.json`` says
``interrupted`` and keeps the finished steps. The reports are drawn last,
from the results alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from .data import SPLIT_FILE, ArrayDataset
from .device import resolve_device
from .errors import AeinterpError, RecipeError
from .model import TorchAutoencoder
from .plugins.manager import PluginHost
from .plugins.registry import ExplainerRegistry
from .progress import NullProgress, RichProgress
from .recipe.schema import LoadedRecipe, PlannedStep, dump_recipe, load_recipe, plan_steps, resolve
from .report import views as _views  # noqa: F401  (exp.plot on the outcome's explanations)
from .run.cache import Cache, data_fingerprint, model_fingerprint
from .run.executors import make_executor
from .run.keys import StepKeys
from .run.lock import OutputLock
from .run.prepare import load_data, load_model, resolve_cache
from .run.record import Recorder, RunOutcome, marks
from .run.results import ResultsStore, RunResults
from .run.schedule import run_concurrently, sigterm_as_interrupt, with_timeout
from .run.step import run_step
from .text import safe_console
from .toolkit.checks import check_finite_outputs
from .toolkit.chunks import ChunkedExplainer

__all__ = ["Runner", "RunOutcome", "RunInterrupted", "marks"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; ``results`` is the results.json written so far, or None."""

    def __init__(self, results: Path | None) -> None:
        self.results = results
        super().__init__(f"interrupted; finished steps are in {results}" if results else "interrupted before any result was written")


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
        self.console = safe_console(console or Console())  # control characters in names and errors are shown escaped
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
        """The recipe's data, read and split."""
        return load_data(loaded)

    def resolve_cache(self, loaded: LoadedRecipe) -> Cache | None:
        """The cache this run uses (the Runner's ``cache`` over the recipe's ``cache:``), or None."""
        return resolve_cache(loaded, self.cache)

    def load_model(
        self,
        loaded: LoadedRecipe,
        data: ArrayDataset,
        out_dir: Path,
        *,
        device: Any = None,
        cache: Cache | None = None,
        data_hash: str | None = None,
    ) -> tuple[TorchAutoencoder, dict[str, Any]]:
        """The recipe's model (trained, cached or loaded) and what the results say of it."""
        return load_model(
            loaded,
            data,
            out_dir,
            device=device if device is not None else (self.device or loaded.recipe.device),
            cache=cache,
            data_hash=data_hash,
            say=self._say,
            progress=self._progress,
            trusted_factories=self.trusted_factories,
        )

    def _say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

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
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AeinterpError(f"cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None
        with OutputLock(out_dir):  # one run per output folder: a second one is told which run is writing there
            return self._run_in(loaded, steps, out_dir)

    def _run_in(self, loaded: LoadedRecipe, steps: list[PlannedStep], out_dir: Path) -> RunOutcome:
        recipe = loaded.recipe
        with sigterm_as_interrupt():
            executor = make_executor(self.executor if self.executor is not None else recipe.executor)
            if hasattr(executor, "check_reachable"):
                executor.check_reachable()  # a cluster address nobody answers at fails the run now, not every step later
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
            store = ResultsStore(
                out_dir, recipe=dump_recipe(recipe), model=model_info, data=data.describe(), plugins=[i.to_json() for i in self.host.infos]
            )
            np.savez(out_dir / SPLIT_FILE, **data.split_arrays())  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle  # which rows were explained, which were fit/background
            outcome = RunOutcome(out_dir=out_dir)
            keying = None
            if cache is not None:
                keying = StepKeys(
                    cache, data_hash=data_hash or "", model_hash=model_fingerprint(model), device=device.type, seed=recipe.seed
                )
            recorder = Recorder(store, outcome, self.console, quiet=self.quiet, keying=keying)
            status = "interrupted"
            try:
                if getattr(executor, "concurrent_steps", False):
                    run_concurrently(steps, executor, model, data, recipe.seed, recorder, self._progress(), keying, timeout=self.timeout)
                else:
                    for step in steps:
                        self._run_step(step, model, data, recipe.seed, recorder)
                status = "failed" if outcome.failures else "complete"
            except KeyboardInterrupt:
                raise RunInterrupted(out_dir / "results.json") from None
            finally:
                if hasattr(executor, "release"):
                    executor.release()
                store.finish(status)
        if status != "interrupted":
            from .report import render_reports

            results = RunResults(out_dir=out_dir, doc=store.doc, explanations=outcome.explanations)
            try:
                outcome.reports = render_reports(
                    results,
                    self.registry,
                    console=None if self.quiet else self.console,
                    options=recipe.report,
                    data=data,
                    cache=cache,
                    model=model,
                )
            except Exception as exc:  # the results are on disk already; a report bug must not hide them
                warnings.warn(
                    f"writing the reports failed ({type(exc).__name__}: {exc}); the results are in {out_dir / 'results.json'}, retry with `aeinterp report {out_dir}`",
                    stacklevel=2,
                )
            if data.info.get("source") in ("h5ad", "zarr") and outcome.explanations:  # scverse users read results back into their AnnData
                from .io.anndata_out import RESULTS_H5AD, write_results_h5ad

                try:
                    write_results_h5ad(
                        out_dir / RESULTS_H5AD, data, outcome.explanations, run={"recipe": dump_recipe(recipe), "model": model_info}
                    )
                    outcome.reports.append(out_dir / RESULTS_H5AD)
                except Exception as exc:  # the results are on disk already
                    warnings.warn(
                        f"writing {RESULTS_H5AD} failed ({type(exc).__name__}: {exc}); the results are in {out_dir / 'results.json'}",
                        stacklevel=2,
                    )
        return outcome

    def _run_step(self, step: PlannedStep, model: TorchAutoencoder, data: ArrayDataset, seed: int, recorder: Recorder) -> None:
        """One step in this process: from the cache, or run (with its timeout) and recorded; a failure is recorded too."""
        keying, outcome = recorder.keying, recorder.outcome
        entry = step.explainer
        key, cached = keying.lookup(step) if keying is not None else (None, None)
        if cached is not None:
            recorder.record(step, cached, key, cached=True)
            return
        timeout = step.timeout if step.timeout is not None else self.timeout
        progress = (
            self._progress(f"{step.alias}: ") if timeout is None else NullProgress()
        )  # no live bar from a thread that may be abandoned
        instance = entry.cls(step.params, progress=progress, results=outcome.explanations)
        if isinstance(instance, ChunkedExplainer):
            instance.rows_dir = recorder.store.out_dir  # per-sample rows spilled to disk land next to results.json
        try:
            with progress:
                explanation = with_timeout(
                    lambda: run_step(
                        instance,
                        model,
                        data,
                        target=step.target,
                        seed=seed,
                        distribution=entry.distribution,
                        version=entry.version,
                    ),
                    timeout,
                    step.alias,
                )
            recorder.record(step, explanation, key)
        except Exception as exc:  # one failing step must not lose the others (a result that cannot be written fails alone)
            recorder.failure(step, exc)
