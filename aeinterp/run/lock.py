"""One run per output folder at a time: ``.aeinterp.lock`` holds the writer's pid.

Two runs writing ``results.json``, the split and the step files of one folder
at once leave neither's results whole. :class:`OutputLock` takes an exclusive
``flock`` on ``<out>/.aeinterp.lock`` (the kernel releases it when the process
dies, so a lock left by a killed run is taken over) and writes the holder's pid,
host and start time into it for the message a second run gets. Where ``flock``
is missing (Windows) the file is created exclusively and a lock whose pid is
no longer alive on this host is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import AeinterpError

__all__ = ["OutputLock", "LOCK_FILE", "OutputBusyError"]

LOCK_FILE = ".aeinterp.lock"


class OutputBusyError(AeinterpError):
    """Another run is writing to this output folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


class OutputLock:
    """Context manager holding ``<folder>/.aeinterp.lock`` for one run (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def _holder(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(self.path.read_text() or "{}")
            if isinstance(doc, dict):
                return doc
        return {}

    def _busy(self) -> OutputBusyError:
        h = self._holder()
        who = f"pid {h.get('pid', '?')} on {h.get('host', '?')}" + (f", started {h['started']}" if h.get("started") else "")
        return OutputBusyError(
            f"another aeinterp run ({who}) is writing to {self.folder}; wait for it to finish or write elsewhere (--out / output:). "
            f"If no run is writing there, remove {self.path}"
        )

    def _stamp(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self._acquire_exclusive()
        for _ in range(20):  # the file may be replaced between open and lock: retry on the new one
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._busy() from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._stamp(fd)
                self._fd = fd
                return None
            os.close(fd)
        raise self._busy()

    def _acquire_exclusive(self) -> None:  # pragma: no cover - Windows
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                h = self._holder()
                pid = h.get("pid")
                if isinstance(pid, int) and h.get("host") == socket.gethostname() and not _alive(pid):
                    self.path.unlink(missing_ok=True)  # a dead run's lock: take it over
                    continue
                raise self._busy() from None
            self._stamp(fd)
            self._fd = fd
            return
        raise self._busy()

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it: a waiting run then locks a fresh file (checked by inode)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
