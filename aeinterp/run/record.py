"""Recording finished steps: ``results.json``, the run's outcome, the cache, and a line on the console.

A computed or cached result is written at once (:class:`aeinterp.run.results.ResultsStore`
appends it atomically), kept for the steps that read it, and saved to the
cache; a failed step is recorded with its plugin, distribution and error,
and the run goes on.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..errors import AeinterpError
from ..explanation import Explanation
from ..recipe.schema import PlannedStep
from ..text import terminal_safe
from .keys import StepKeys
from .results import ResultsStore

__all__ = ["RunOutcome", "Recorder", "marks"]


def marks(console: Console) -> tuple[str, str]:
    """The ok / failed marks: check marks where the terminal can print them, plain words elsewhere."""
    encoding = (getattr(console, "encoding", "") or "").lower().replace("_", "-")
    return ("\u2713", "\u2717") if encoding.startswith("utf") else ("ok", "FAILED")


@dataclass
class RunOutcome:
    out_dir: Path
    explanations: dict[str, Explanation] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class Recorder:
    """Where a run's finished steps go: its results store, its outcome, its cache keys and its console."""

    store: ResultsStore
    outcome: RunOutcome
    console: Console
    quiet: bool = False
    keying: StepKeys | None = None

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def record(self, step: PlannedStep, explanation: Explanation, key: str | None = None, *, cached: bool = False) -> None:
        """Write a finished (or ``cached``) step to ``results.json``, keep it for later steps, and save it to the cache under ``key``."""
        entry = step.explainer
        self.store.add(step.alias, explanation, **({"cached": True} if cached else {}))
        self.outcome.explanations[step.alias] = explanation
        if self.keying is not None and key is not None:
            self.keying.save(step, key, explanation, cached=cached)
        label = step.alias if step.alias == entry.name else f"{step.alias} ({entry.name})"
        if cached:
            ok_mark, _ = marks(self.console)
            took = f" (computed in {explanation.runtime_s:.2f} s)" if explanation.runtime_s is not None else ""
            self.say(f"{ok_mark} {label} on {step.target.value}: cached{took}")
        elif not self.quiet:
            ok_mark, _ = marks(self.console)
            self.console.print(
                f"[green]{ok_mark} {escape(label)}[/green] on {step.target.value} in {explanation.runtime_s:.2f} s", highlight=False
            )

    def failure(self, step: PlannedStep, exc: BaseException) -> None:
        """Record a failed step (which plugin, which distribution, the error) and say so."""
        entry = step.explainer
        tb = (
            "".join(traceback.format_exception(exc.__cause__ or exc))
            if not isinstance(exc, AeinterpError) or exc.__cause__ or getattr(exc, "__notes__", None)
            else ""
        )
        failure = self.store.add_error(
            step.alias,
            entry.name,
            step.target.value,
            exc,
            params=step.params.model_dump(mode="json"),
            distribution=entry.distribution,
            version=entry.version,
            traceback=tb,
        )
        self.outcome.failures.append(failure)
        if not self.quiet:
            _, fail_mark = marks(self.console)
            self.console.print(
                f"[red]{fail_mark} {escape(step.alias)}[/red] ({escape(entry.name)} from {escape(entry.distribution)} {escape(entry.version)}): {escape(terminal_safe(exc))}",
                highlight=False,
                soft_wrap=True,
            )
