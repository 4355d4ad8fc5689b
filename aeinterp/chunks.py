"""Work that splits into chunks: the seam between explainers and executors.

An explainer whose work splits declares it as data, ``Capabilities(splits=...)``:

``"samples"``
    its result is a reduction over sample chunks (partial sums added up);
``"targets"``
    its result is one independent piece per target (e.g. a formula per latent);
``"none"``
    (the default) it runs as one call to ``explain``.

Such an explainer subclasses :class:`ChunkedExplainer` and implements three
methods instead of ``explain``::

    def prepare(self, model, data, *, target, rng) -> state        # once, small and picklable
    def explain_chunk(self, model, data, state, units, *, target, rng) -> Partial
    def finish(self, model, data, state, total: Partial, *, target) -> Explanation

``units`` are the sample indices (``splits="samples"``) or the target indices
(``splits="targets"``) of one chunk, given by :meth:`ChunkedExplainer.units`.
A :class:`Partial` holds ``sums`` (added elementwise over chunks, e.g. the sum
of |attribution| and its count) and ``rows`` (one row per unit, concatenated in
unit order, e.g. per-sample attributions when ``local`` is asked for).
Every chunk gets its own generator, :func:`chunk_rng` of one base seed drawn
from the step's ``rng`` and the chunk's index, so any executor that runs the
same chunks returns the same result. The executor (``local`` here; Ray in the
``ray`` extra) only decides *where* chunks run; the chunks themselves are
fixed by the explainer.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from .explainer import Explainer
from .explanation import Explanation
from .targets import Target

__all__ = ["Partial", "ChunkedExplainer", "Executor", "LocalExecutor", "chunk_rng", "split_units", "combine", "SPLITS"]

SPLITS = ("none", "samples", "targets")
Splits = Literal["none", "samples", "targets"]


@dataclass
class Partial:
    """One chunk's contribution: ``sums`` add up, ``rows`` concatenate in unit order."""

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    count: int = 0

    def __add__(self, other: Partial) -> Partial:
        if not self.sums and not self.rows and not self.count:
            return other
        if set(self.sums) != set(other.sums) or set(self.rows) != set(other.rows):
            raise ValueError("partials with different keys cannot be combined")
        return Partial(
            sums={k: self.sums[k] + other.sums[k] for k in self.sums},
            rows={k: np.concatenate([self.rows[k], other.rows[k]]) for k in self.rows},
            count=self.count + other.count,
        )


def combine(partials: Iterable[Partial]) -> Partial:
    """Add partials in the order given (the executor passes them in chunk order)."""
    total = Partial()
    for p in partials:
        total = total + p
    return total


def chunk_rng(base_seed: int, index: int) -> np.random.Generator:
    """The generator of chunk ``index``: independent of which worker runs it."""
    return np.random.default_rng([int(base_seed), int(index)])


def split_units(units: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """``units`` cut into consecutive chunks of at most ``chunk_size``."""
    chunk_size = max(1, int(chunk_size))
    return [units[i : i + chunk_size] for i in range(0, len(units), chunk_size)]


ChunkFn = Callable[[int, np.ndarray], Partial]


class Executor(Protocol):
    """Runs the chunks of one step and yields their partials in chunk order.

    ``workers`` says how many chunks may run at once (1: one after another);
    an explainer whose result does not depend on its chunking may use it to
    choose chunk sizes (e.g. one target per chunk when chunks run in parallel).
    """

    workers: int

    def map_chunks(self, explainer: ChunkedExplainer, model: Any, data: Any, state: Any, chunks: Sequence[np.ndarray], *, target: Target, base_seed: int) -> Iterator[Partial]: ...


class LocalExecutor:
    """Runs every chunk in this process, one after another (the default; imports nothing)."""

    kind = "local"
    workers = 1

    def map_chunks(self, explainer: ChunkedExplainer, model: Any, data: Any, state: Any, chunks: Sequence[np.ndarray], *, target: Target, base_seed: int) -> Iterator[Partial]:
        label = f"{explainer.capabilities.splits} chunks"
        tracked = chunks if len(chunks) == 1 else explainer.progress.track(chunks, total=len(chunks), description=label)  # no bar for 1 of 1
        for i, units in enumerate(tracked):
            yield explainer.explain_chunk(model, data, state, units, target=target, rng=chunk_rng(base_seed, i))


class ChunkedExplainer(Explainer):
    """Base of explainers whose work splits over samples or targets (see the module docstring).

    ``explain`` is implemented here: ``prepare`` once, ``explain_chunk`` for
    each chunk on :attr:`executor`, the partials combined, then ``finish``.
    """

    #: where the chunks run; the runner sets it per step (default: this process)
    executor: Executor = LocalExecutor()
    #: CPU threads the executor grants each chunk (a Ray task's ``num_cpus``); None: this process's own
    cpus: int | None = None

    @abstractmethod
    def prepare(self, model: Any, data: Any, *, target: Target, rng: np.random.Generator) -> Any:
        """Shared state for every chunk (background rows, baselines, ...); small and picklable."""

    @abstractmethod
    def units(self, model: Any, data: Any, state: Any, *, target: Target) -> tuple[np.ndarray, int]:
        """The unit indices to split (sample rows or target indices) and the chunk size."""

    @abstractmethod
    def explain_chunk(self, model: Any, data: Any, state: Any, units: np.ndarray, *, target: Target, rng: np.random.Generator) -> Partial:
        """The partial result of one chunk of units."""

    @abstractmethod
    def finish(self, model: Any, data: Any, state: Any, total: Partial, *, target: Target) -> Explanation:
        """The Explanation from the combined partials."""

    def explain(self, model: Any, data: Any, *, target: Target | str, rng: np.random.Generator) -> Explanation:
        target = Target(target)
        state = self.prepare(model, data, target=target, rng=rng)
        units, chunk_size = self.units(model, data, state, target=target)
        base_seed = int(rng.integers(2**62))
        chunks = split_units(np.asarray(units), chunk_size)
        total = combine(self.executor.map_chunks(self, model, data, state, chunks, target=target, base_seed=base_seed))
        return self.finish(model, data, state, total, target=target)
