"""Sizes checked before allocating, writes that cannot half-happen: memory and disk, asked before they are used.

Memory
    :func:`available_bytes` is the memory this process can still take: the
    system's available memory (``psutil``, else ``sysconf``), lowered by a cgroup
    (container) limit where there is one, and by ``AEINTERP_MEMORY_LIMIT_MB``.
    :func:`check_fits` raises :class:`aeinterp.errors.DataError` (exit 2 on the
    CLI) when an allocation of ``nbytes`` would not fit, saying what it was for
    and how large it would be.

Disk
    A memory map of a sparse file (``np.lib.format.open_memmap`` only seeks to the
    end) allocates its blocks as they are written; on a full disk that write is a
    ``SIGBUS`` that kills the process, with nothing recorded. :func:`check_free`
    checks the free space and :func:`reserve` allocates the whole file up front
    (``posix_fallocate``), so a full disk is a :class:`aeinterp.errors.ResourceError`
    there, and only the step that wanted the space fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from .errors import DataError, ResourceError

__all__ = ["available_bytes", "check_fits", "human_bytes", "MEMORY_ENV", "check_free", "reserve"]

MEMORY_ENV = "AEINTERP_MEMORY_LIMIT_MB"
#: the share of the available memory one allocation may take (the rest: copies, the model, the OS)
FRACTION = 0.9


def human_bytes(n: float) -> str:
    """``n`` bytes as ``1.5 GiB`` / ``12 MiB`` / ``3.1 TiB``."""
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def _cgroup_room() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            return max(0, int(limit) - used)
    return None


def available_bytes() -> int:
    """Memory this process can still allocate (see the module docstring)."""
    room: int | None = None
    try:
        import psutil

        room = int(psutil.virtual_memory().available)
    except Exception:  # psutil missing: ask the OS
        with contextlib.suppress(ValueError, OSError, AttributeError):
            room = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for other in (_cgroup_room(),):
        if other is not None:
            room = other if room is None else min(room, other)
    env = os.environ.get(MEMORY_ENV)
    if env:
        with contextlib.suppress(ValueError):
            cap = int(float(env) * 2**20)
            room = cap if room is None else min(room, cap)
    return room if room is not None else 2**62


def check_fits(nbytes: float, what: str, advice: str = "") -> None:
    """Raise :class:`DataError` when ``nbytes`` (an estimate) exceeds what this process can allocate.

    ``what`` names the allocation ("the data as a dense float32 array (200,000 × 200,000)"),
    ``advice`` says how to make it smaller.
    """
    room = available_bytes()
    if nbytes > FRACTION * room:
        tail = f"; {advice}" if advice else ""
        raise DataError(
            f"{what} would take {human_bytes(nbytes)}, more than the {human_bytes(room)} of memory available here; refused before allocating{tail}"
        )


MARGIN = 2**20  # bytes kept free beyond the file itself (headers, results.json)


def check_free(folder: Path, nbytes: int, what: str) -> None:
    """Raise :class:`ResourceError` when ``folder``'s file system has less than ``nbytes`` (plus a margin) free."""
    free = shutil.disk_usage(folder).free
    if nbytes + MARGIN > free:
        raise ResourceError(
            f"{what} needs {nbytes / 2**20:,.1f} MiB in {folder}, but only {free / 2**20:,.1f} MiB are free there; "
            "free space, or keep less per sample (local: none or top_k:K)"
        )


def reserve(path: Path, what: str) -> None:
    """Allocate every block of the (already sized, possibly sparse) file ``path``; on failure remove it and raise :class:`ResourceError`."""
    path = Path(path)
    try:
        with open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size:
                os.posix_fallocate(fh.fileno(), 0, size)
    except AttributeError:  # no posix_fallocate here (macOS, Windows): check_free was the guard
        return
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            return  # this file system cannot preallocate: check_free was the guard
        path.unlink(missing_ok=True)
        raise ResourceError(
            f"cannot reserve the space for {what} in {path.parent}: {exc.strerror or exc}; free space, or keep less per sample (local: none or top_k:K)"
        ) from None
