"""Which steps a step reads, and each step's cache key.

A step whose params name earlier steps (:data:`aeinterp.StepRef`) depends on
them: the scheduler starts it once they have finished, and its cache key
includes theirs, so a changed upstream result is never served stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..explainer import step_ref_fields
from ..explanation import Explanation
from ..recipe.schema import PlannedStep
from .cache import Cache

__all__ = ["StepKeys", "step_refs", "step_dependencies"]


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
    return {s.alias: frozenset(ref for ref in step_refs(s.params) if ref in aliases) for s in steps}


class StepKeys:
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
            name=e.name,
            distribution=e.distribution,
            version=e.version,
            params=step.params.model_dump(mode="json"),
            seed=self.seed,
            target=step.target.value,
            data_hash=self.data_hash,
            model_hash=self.model_hash,
            device=self.device,
            depends_on=depends,
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
