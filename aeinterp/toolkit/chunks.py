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
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ..explainer import Explainer
from ..explanation import Explanation
from ..targets import Target
from .streaming import RowsSink, converged, round_sizes

__all__ = [
    "Partial",
    "ChunkedExplainer",
    "Executor",
    "LocalExecutor",
    "Stopping",
    "chunk_rng",
    "round_seed",
    "split_units",
    "chunk_for_workers",
    "combine",
    "chunk_size_for",
    "SPLITS",
]

SPLITS = ("none", "samples", "targets")
Splits = Literal["none", "samples", "targets"]


@dataclass
class Partial:
    """One chunk's contribution: ``sums`` add up, ``maxima`` combine by elementwise maximum,
    ``rows`` concatenate in unit order."""

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    count: int = 0
    maxima: dict[str, np.ndarray] = field(default_factory=dict)

    def __add__(self, other: Partial) -> Partial:
        if not self.sums and not self.rows and not self.count and not self.maxima:
            return other
        if set(self.sums) != set(other.sums) or set(self.rows) != set(other.rows) or set(self.maxima) != set(other.maxima):
            raise ValueError("partials with different keys cannot be combined")
        return Partial(
            sums={k: self.sums[k] + other.sums[k] for k in self.sums},
            rows={k: np.concatenate([self.rows[k], other.rows[k]]) for k in self.rows},
            count=self.count + other.count,
            maxima={k: np.maximum(self.maxima[k], other.maxima[k]) for k in self.maxima},
        )


def _add_sums(total: Partial, p: Partial) -> Partial:
    """``total`` plus ``p``'s sums, count and maxima (not rows), adding into ``total``'s own arrays where it can:
    a sum of a 37,000-feature x 128-target step is ~400 MB, and ``total + p`` held a third copy at every chunk."""
    if not total.sums and not total.count and not total.maxima:
        own = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in p.sums.items()}  # a copy: a chunk's sums may be shared
        return Partial(sums=own, count=p.count, maxima=dict(p.maxima))
    if set(total.sums) != set(p.sums) or set(total.maxima) != set(p.maxima):
        raise ValueError("partials with different keys cannot be combined")
    sums = dict(total.sums)
    for k, v in p.sums.items():
        a = sums[k]
        if isinstance(a, np.ndarray) and a.flags.writeable and np.shape(v) == a.shape and np.result_type(a, v) == a.dtype:
            a += v  # in place: arrays from an executor's store may be read-only, and the first is the first partial's own
        else:
            sums[k] = a + v
    return Partial(sums=sums, count=total.count + p.count, maxima={k: np.maximum(total.maxima[k], p.maxima[k]) for k in total.maxima})


def combine(
    partials: Iterable[Partial],
    *,
    start: Partial | None = None,
    sink: RowsSink | None = None,
    spill: frozenset[str] = frozenset(),
    offset: int = 0,
) -> Partial:
    """Add partials in the order given (the executor passes them in chunk order) to ``start``.

    Rows under the keys in ``spill`` go to ``sink`` at unit offset ``offset``
    onwards instead of being concatenated.
    """
    total = start if start is not None else Partial()
    pending = {k: [v] for k, v in total.rows.items()}  # rows are concatenated once at the end, not chunk by chunk (quadratic)
    total = Partial(sums=total.sums, count=total.count, maxima=total.maxima)
    for p in partials:
        if spill and sink is not None:
            moved = {k: p.rows.pop(k) for k in spill if k in p.rows}
            for k, rows in moved.items():
                sink.write(k, offset, rows)
            offset += next(iter(moved.values())).shape[0] if moved else p.count
        if (pending or total.count) and set(pending) != set(p.rows):
            raise ValueError("partials with different keys cannot be combined")
        for k, rows in p.rows.items():
            pending.setdefault(k, []).append(rows)
        total = _add_sums(total, p)
    total.rows = {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in pending.items()}
    return total


def chunk_size_for(bytes_per_unit: float, memory_mb: float, total: int | None = None) -> int:
    """The number of units whose working memory (``bytes_per_unit`` each) fits in ``memory_mb`` (at least 1)."""
    size = max(1, int(memory_mb * 2**20 // max(1.0, float(bytes_per_unit))))
    return size if total is None else max(1, min(size, int(total)))


def round_seed(base_seed: int, round_index: int) -> int:
    """The base seed of anytime round ``round_index`` (round 0 uses ``base_seed`` itself)."""
    if round_index == 0:
        return int(base_seed)
    return int(np.random.default_rng([int(base_seed), int(round_index), 7]).integers(2**62))


@dataclass(frozen=True)
class Stopping:
    """The anytime stopping rule of one step (see :func:`aeinterp.toolkit.streaming.converged`)."""

    tolerance: float = 0.05
    top_k: int = 5
    first_round: int = 128


def chunk_rng(base_seed: int, index: int) -> np.random.Generator:
    """The generator of chunk ``index``: independent of which worker runs it."""
    return np.random.default_rng([int(base_seed), int(index)])


#: chunks per worker, and the smallest chunk of samples, when an executor cuts chunks for its workers (``Capabilities.chunk_invariant``)
CHUNKS_PER_WORKER, MIN_CHUNK = 4, 64


def chunk_for_workers(n_units: int, chunk_size: int, workers: int, minimum: int = MIN_CHUNK) -> int:
    """``chunk_size``, made smaller so ``workers`` tasks have work: ``CHUNKS_PER_WORKER`` chunks each, of at least ``minimum`` units."""
    if workers <= 1:
        return chunk_size
    return max(1, min(int(chunk_size), max(int(minimum), -(-int(n_units) // (CHUNKS_PER_WORKER * int(workers))))))


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
    ) -> Iterator[Partial]: ...


class LocalExecutor:
    """Runs every chunk in this process, one after another (the default; imports nothing)."""

    kind = "local"
    workers = 1

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
        label = f"{explainer.capabilities.splits} chunks"
        tracked = (
            chunks if len(chunks) == 1 else explainer.progress.track(chunks, total=len(chunks), description=label)
        )  # no bar for 1 of 1
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
    #: where spilled rows are written (the runner sets the output folder; default: a temporary folder)
    rows_dir: Path | None = None

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

    # --- optional extensions (see the module docstring) ------------------------------
    def spill(self, state: Any) -> frozenset[str]:
        """Row keys written to disk as they arrive instead of concatenated (default: none)."""
        return frozenset()

    def stopping(self, state: Any) -> Stopping | None:
        """The anytime rule, or None to run every unit (default: from ``anytime_tolerance`` / ``max_samples: auto`` params)."""
        p = self.params
        tol = getattr(p, "anytime_tolerance", None)
        if tol is None and getattr(p, "max_samples", None) != "auto":
            return None
        return Stopping(
            tolerance=tol if tol is not None else 0.05, top_k=getattr(p, "stable_top_k", 5), first_round=getattr(p, "first_round", 128)
        )

    def interval(self, model: Any, data: Any, state: Any, total: Partial, *, target: Target) -> tuple[np.ndarray, np.ndarray]:
        """``(importance, 95 % half-width)``, both ``(targets, features)``, from the partials so far (anytime only)."""
        raise NotImplementedError(f"{self.name} has no anytime interval: leave anytime_tolerance and max_samples: auto unset")

    def explain(self, model: Any, data: Any, *, target: Target | str, rng: np.random.Generator) -> Explanation:
        target = Target(target)
        state = self.prepare(model, data, target=target, rng=rng)
        units, chunk_size = self.units(model, data, state, target=target)
        units = np.asarray(units)
        if self.capabilities.chunk_invariant:  # the result is the same for any chunking: give every worker chunks
            minimum = MIN_CHUNK if self.capabilities.splits == "samples" else 1  # a target is a task's worth of work
            chunk_size = chunk_for_workers(len(units), chunk_size, getattr(self.executor, "workers", 1), minimum)
        base_seed = int(rng.integers(2**62))
        spill, stop = self.spill(state), self.stopping(state)
        sink = (
            RowsSink(len(units), None if self.rows_dir is None else Path(self.rows_dir) / f".rows-{self.name}-{base_seed:x}")
            if spill
            else None
        )
        rounds = [len(units)] if stop is None else round_sizes(len(units), stop.first_round)
        try:
            return self._explain_rounds(model, data, state, target, units, chunk_size, base_seed, spill, stop, sink, rounds)
        except BaseException:
            if sink is not None:  # a failed step leaves no half-written spill behind
                sink.discard()
            raise

    def _explain_rounds(
        self,
        model: Any,
        data: Any,
        state: Any,
        target: Target,
        units: np.ndarray,
        chunk_size: int,
        base_seed: int,
        spill: frozenset[str],
        stop: Any,
        sink: RowsSink | None,
        rounds: list[int],
    ) -> Explanation:
        total, done, previous, history = Partial(), 0, None, []
        value = halfwidth = None
        for r, upto in enumerate(rounds):
            chunks = split_units(units[done:upto], chunk_size)
            parts = self.executor.map_chunks(self, model, data, state, chunks, target=target, base_seed=round_seed(base_seed, r))
            total = combine(parts, start=total, sink=sink, spill=spill, offset=done)
            done = upto
            if stop is None:
                continue
            value, halfwidth = self.interval(model, data, state, total, target=target)
            ok, worst = converged(value, halfwidth, previous, stop.tolerance, stop.top_k)
            history.append({"samples": int(done), "max_rel_halfwidth": worst})
            previous = value
            if ok:
                break
        if sink is not None:
            total.rows.update({k: v[:done] for k, v in sink.arrays().items()})
        result = self.finish(model, data, state, total, target=target)
        if stop is None:
            return result
        facts = {
            "samples_used": int(done),
            "samples_available": int(len(units)),
            "rounds": history,
            "tolerance": stop.tolerance,
            "stable_top_k": stop.top_k,
            "stopped": "converged" if done < len(units) else "all samples used",
            "interval": "95 % normal interval of the mean over samples (half-width in arrays['importance_halfwidth'])",
        }
        return result.replace(
            extras={**result.extras, "anytime": facts}, arrays={**result.arrays, "importance_halfwidth": np.asarray(halfwidth)}
        )
