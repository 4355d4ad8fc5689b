"""Progress reporting that explainers use without knowing who is watching.

Explainers call ``self.progress.track(iterable, total=..., description=...)``
on every long loop. The runner passes a rich progress bar; direct API use gets
:class:`NullProgress`, which just iterates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["Progress", "NullProgress", "RichProgress"]

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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as _Progress, TextColumn, TimeElapsedColumn

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
