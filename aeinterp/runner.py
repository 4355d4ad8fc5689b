"""The runner: recipe -> data + model -> each explainer step -> results -> reports.

It knows no explainer by name. A failing step is recorded (which plugin,
which distribution, the error) and the run goes on; the outcome says whether
anything failed, and the CLI turns that into the exit code.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .data import ArrayDataset
from .datasets import load_dataset
from .errors import AeinterpError
from .explanation import Explanation
from .loading import adapt, build_builtin, load_module
from .model import TorchAutoencoder
from .plugins import PluginHost
from .progress import NullProgress, RichProgress
from .recipe import LoadedRecipe, PlannedStep, dump_recipe, load_recipe, plan_steps, resolve
from .registry import ExplainerRegistry
from .results import ResultsStore, RunResults
from .step import run_explainer
from .training import TrainConfig

__all__ = ["Runner", "RunOutcome"]


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
    ) -> None:
        self.host = PluginHost(autoload=autoload, allow=allow, block=block, plugins=plugins, trace=trace)
        self.console = console or Console()
        self.quiet = quiet

    @property
    def registry(self) -> ExplainerRegistry:
        return self.host.registry

    # --- validation ----------------------------------------------------------------
    def validate(self, path: str | Path, overrides: Sequence[str] = ()) -> tuple[LoadedRecipe, list[PlannedStep]]:
        """Both passes of validation, without loading data or model."""
        loaded = load_recipe(path, overrides)
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
        return load_dataset(
            path=resolve(loaded.base_dir, d.path), builtin=d.builtin, kind=d.kind, feature_names=d.feature_names,
            label=d.label, key=d.key, groups=d.groups, explain_fraction=d.split.explain_fraction,
            explain_size=d.split.explain_size, split_seed=d.split.seed, standardize=d.standardize, nan=d.nan,
            max_samples=d.max_samples,
        )

    def load_model(self, loaded: LoadedRecipe, data: ArrayDataset, out_dir: Path) -> tuple[TorchAutoencoder, dict[str, Any]]:
        m = loaded.recipe.model
        info: dict[str, Any] = {}
        if m.builtin is not None:
            progress = self._progress("model: ")
            with progress:
                module, trained = build_builtin(
                    m.builtin, data, latent_dim=int(m.latent_dim or 0), options=m.options,
                    train=TrainConfig(**m.train.model_dump(), seed=loaded.recipe.seed), progress=progress,
                )
            info.update(source=f"builtin:{getattr(module, 'architecture', m.builtin)}", training=trained.to_json())
            if m.save:
                import torch

                target = resolve(out_dir, m.save)
                assert target is not None
                target.parent.mkdir(parents=True, exist_ok=True)
                torch.save(module.checkpoint(), target)
                info["saved"] = str(target)
        else:
            path = resolve(loaded.base_dir, m.path)
            assert path is not None  # the recipe schema guarantees path or builtin
            module = load_module(path, format=m.format, factory=m.factory, kwargs=m.kwargs, trust=m.trust, base_dir=loaded.base_dir)
            info["source"] = str(path)
        model = adapt(module, data, encoder=m.encoder, decoder=m.decoder, code=m.code, head=m.head, task_dims=m.task_dims, description=type(module).__name__)
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
        assert out_dir is not None
        out_dir.mkdir(parents=True, exist_ok=True)
        data = self.load_data(loaded)
        model, model_info = self.load_model(loaded, data, out_dir)
        store = ResultsStore(out_dir, recipe=dump_recipe(recipe), model=model_info, data=data.describe(), plugins=[i.to_json() for i in self.host.infos])
        outcome = RunOutcome(out_dir=out_dir)
        status = "interrupted"
        try:
            for step in steps:
                self._run_step(step, model, data, recipe.seed, store, outcome)
            status = "failed" if outcome.failures else "complete"
        finally:
            store.finish(status)
        if status != "interrupted":
            from .report import render_reports

            results = RunResults(out_dir=out_dir, doc=store.doc, explanations=outcome.explanations)
            try:
                outcome.reports = render_reports(results, self.registry, console=None if self.quiet else self.console, options=recipe.report, data=data)
            except Exception as exc:  # the results are on disk already; a report bug must not hide them
                warnings.warn(f"writing the reports failed ({type(exc).__name__}: {exc}); the results are in {out_dir / 'results.json'}, retry with `aeinterp report {out_dir}`", stacklevel=2)
        return outcome

    def _run_step(self, step: PlannedStep, model: TorchAutoencoder, data: ArrayDataset, seed: int, store: ResultsStore, outcome: RunOutcome) -> None:
        entry = step.explainer
        progress = self._progress(f"{step.alias}: ")
        try:
            with progress:
                explanation = run_explainer(
                    entry.cls(step.params, progress=progress, results=outcome.explanations), model, data, target=step.target, seed=seed,
                    distribution=entry.distribution, version=entry.version,
                )
        except Exception as exc:  # one failing step must not lose the others
            tb = "".join(traceback.format_exception(exc.__cause__ or exc)) if not isinstance(exc, AeinterpError) or exc.__cause__ else ""
            failure = store.add_error(
                step.alias, entry.name, step.target.value, exc, params=step.params.model_dump(mode="json"),
                distribution=entry.distribution, version=entry.version, traceback=tb,
            )
            outcome.failures.append(failure)
            if not self.quiet:
                self.console.print(f"[red]✗ {step.alias}[/red] ({entry.name} from {entry.distribution} {entry.version}): {exc}", highlight=False, soft_wrap=True)
            return
        store.add(step.alias, explanation)
        outcome.explanations[step.alias] = explanation
        if not self.quiet:
            label = step.alias if step.alias == entry.name else f"{step.alias} ({entry.name})"
            self.console.print(f"[green]✓ {label}[/green] on {step.target.value} in {explanation.runtime_s:.2f} s", highlight=False)
