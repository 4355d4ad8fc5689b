"""Progress reporting that explainers use without knowing who is watching.

Explainers call ``self.progress.track(iterable, total=..., description=...)``
on every long loop. The runner passes a rich progress bar; direct API use gets a rich bar in a
terminal, :class:`TextProgress` in a Jupyter kernel (plain text lines on
stderr, redrawn with ``\\r``: no ipywidgets needed, so no rich warning about
it on every call), and :class:`NullProgress`, which just iterates, elsewhere.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Protocol, TypeVar, runtime_checkable

__all__ = ["Progress", "NullProgress", "RichProgress", "TextProgress"]

T = TypeVar("T")


@runtime_checkable
class Progress(Protocol):
    def track(self, iterable: Iterable[T], *, total: int | None = None, description: str = "") -> Iterable[T]: ...


class NullProgress:
    """Iterates, shows nothing."""

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def track(self, iterable: Iterable[T], *, total: int | None = None, description: str = "") -> Iterable[T]:
        return iterable

    def view(self, prefix: str) -> NullProgress:
        return self


class RichProgress:
    """A rich progress bar per tracked loop, removed when the loop ends."""

    def __init__(self, console=None, prefix: str = "") -> None:  # noqa: ANN001 - rich.Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as _Progress

        self.prefix = prefix
        self._bar = _Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )

    def view(self, prefix: str) -> RichProgress:
        """The same bars with another label prefix: steps running at once share one live display."""
        other = object.__new__(RichProgress)
        other.prefix, other._bar = prefix, self._bar
        return other

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def track(self, iterable: Iterable[T], *, total: int | None = None, description: str = "") -> Iterator[T]:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        label = f"{self.prefix}{description}" if description else self.prefix.rstrip(": ")
        task = self._bar.add_task(label, total=total)
        try:
            for item in iterable:
                yield item
                self._bar.advance(task)
        finally:
            self._bar.remove_task(task)


class TextProgress:
    """One text line per tracked loop on ``stream`` (default stderr), redrawn in place with ``\\r`` at most
    every ``interval`` seconds and closed with the loop's total time: what a notebook shows without widgets."""

    def __init__(self, stream: IO[str] | None = None, prefix: str = "", *, interval: float = 0.25, width: int = 24) -> None:
        self.stream, self.prefix, self.interval, self.width = stream, prefix, interval, width

    def view(self, prefix: str) -> TextProgress:
        return TextProgress(self.stream, prefix, interval=self.interval, width=self.width)

    def __enter__(self) -> TextProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _line(self, label: str, done: int, total: int | None, elapsed: float) -> str:
        if total:
            filled = int(self.width * min(done, total) / total)
            return f"\r{label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {elapsed:.1f} s"
        return f"\r{label} {done} {elapsed:.1f} s"

    def track(self, iterable: Iterable[T], *, total: int | None = None, description: str = "") -> Iterator[T]:
        stream = self.stream or sys.stderr
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        label = f"{self.prefix}{description}" if description else self.prefix.rstrip(": ") or "working"
        start = last = time.perf_counter()
        done = 0
        stream.write(self._line(label, 0, total, 0.0))
        try:
            for item in iterable:
                yield item
                done += 1
                now = time.perf_counter()
                if now - last >= self.interval:
                    last = now
                    stream.write(self._line(label, done, total, now - start))
                    stream.flush()
        finally:
            stream.write(self._line(label, done, total, time.perf_counter() - start) + "\n")
            stream.flush()
