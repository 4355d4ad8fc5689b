"""Writes that cannot half-happen: disk blocks reserved before a memory-mapped file is filled.

A memory map of a sparse file (``np.lib.format.open_memmap`` only seeks to the
end) allocates its blocks as they are written; on a full disk that write is a
``SIGBUS`` that kills the process, with nothing recorded. :func:`reserve` checks
the free space and allocates the whole file up front (``posix_fallocate``), so a
full disk is a :class:`aeinterp.errors.ResourceError` there, and only the step
that wanted the space fails.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import ResourceError

__all__ = ["reserve", "check_free"]

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
        raise ResourceError(f"cannot reserve the space for {what} in {path.parent}: {exc.strerror or exc}; free space, or keep less per sample (local: none or top_k:K)") from None
