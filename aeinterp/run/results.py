"""``OUT/results.json`` and the array files beside it.

The shape of ``results.json`` is a stable contract (see the README): fields are
added, never renamed. An interrupted run leaves every finished step readable.

Layout (compact and append-friendly; any JSON reader sees the same document)::

    {"aeinterp_version": ..., "recipe": ..., "model": ..., "data": ..., "plugins": ..., "layout": "append-v1", "explainers": [
    {entry of step 1}
    ,{entry of step 2}
    ],"status": "running", "finished": null}

The header is written once (atomically). Each finished step appends its entry,
one line of compact JSON, by overwriting only the closing tail (``]`` and the
status) in place: the cost of a step is its own entry, never the document so
far, and entries above the inline threshold hold references, not matrices
(:meth:`aeinterp.explanation.Explanation.to_json`). ``finish`` rewrites the
tail alone. Should a crash cut an append short, :func:`load_results` reads
the header line and every complete entry line and marks the run
``interrupted``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import AeinterpError
from ..explanation import Explanation, jsonable

__all__ = ["ResultsStore", "RunResults", "load_results", "RESULTS_FILE"]

RESULTS_FILE = "results.json"
LAYOUT = "append-v1"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _dumps(payload: Any) -> str:
    return json.dumps(jsonable(payload), separators=(",", ":"), allow_nan=False)


def write_json_atomic(path: Path, payload: Any, *, text: str | None = None) -> None:
    """Write ``payload`` (or ``text``) to a temporary file beside ``path``, then rename it over ``path``.

    The file is created with mode 0666 less the umask, like every other output
    (``tempfile.mkstemp`` would make it 0600).
    """
    text = text if text is not None else _dumps(payload)  # fails before anything is written
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C (and SIGTERM) that arrive inside are handled on leaving: an append and its bookkeeping happen together.

    Without it a Ctrl-C landing after an entry was written but before its
    offset was recorded (``fsync`` can take seconds on a loaded disk) let the
    next append overwrite that entry. Python runs signal handlers in the main
    thread, so swapping them there covers signals delivered to any thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
        except (ValueError, OSError):  # pragma: no cover - no signals here
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():  # type: ignore[assignment]
            signal.signal(sig, handler)
        for signum, frame in caught[:1]:
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


class ResultsStore:
    """Accumulates a run's results: the header once, then one appended line per step (see the module docstring)."""

    def __init__(self, out_dir: Path, *, recipe: Any, model: dict[str, Any], data: dict[str, Any], plugins: list[dict[str, Any]]) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(f".{RESULTS_FILE}.*.tmp"):  # left by a run that was killed mid-write
            stale.unlink(missing_ok=True)
        for stale in out_dir.glob("*.tmp.npz"):
            stale.unlink(missing_ok=True)
        self.doc: dict[str, Any] = {
            "aeinterp_version": __version__,
            "status": "running",
            "started": _now(),
            "finished": None,
            "recipe": recipe,
            "model": model,
            "data": data,
            "plugins": plugins,
            "layout": LAYOUT,
            "explainers": [],
        }
        head = {k: v for k, v in self.doc.items() if k not in ("status", "finished", "explainers")}
        self._head = _dumps(head)[:-1] + ',"explainers":['
        self._offset = len(self._head.encode())
        write_json_atomic(self.out_dir / RESULTS_FILE, None, text=self._head + self._tail())

    def _tail(self) -> str:
        return "\n]," + _dumps({"status": self.doc["status"], "finished": self.doc["finished"]})[1:] + "\n"

    def _append(self, entry: dict[str, Any] | None) -> None:
        """Write ``entry`` (if any) and the tail at the end of the entries, in place."""
        piece = b""
        if entry is not None:
            piece = (("\n," if self.doc["explainers"] else "\n") + _dumps(entry)).encode()
        with open(self.out_dir / RESULTS_FILE, "r+b") as fh:
            fh.seek(self._offset)
            fh.write(piece + self._tail().encode())
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
        self._offset += len(piece)
        if entry is not None:
            self.doc["explainers"].append(entry)

    def add(self, alias: str, explanation: Explanation, **meta: Any) -> dict[str, Any]:
        """Write a step's arrays and entry; ``meta`` adds fields to the entry (e.g. ``cached=True``)."""
        arrays = f"{alias}.npz"
        local_file = explanation.save_arrays(self.out_dir / arrays)
        entry = {"alias": alias, "status": "ok", **explanation.to_json(), "arrays": arrays, "local_file": local_file, **jsonable(meta)}
        entry = {"name": entry.pop("name"), **entry}
        entry = jsonable(entry)
        json.dumps(entry, allow_nan=False)  # a step whose entry is not JSON fails alone, before the document changes
        with _signals_deferred():
            self._append(entry)
        return entry

    def add_error(
        self,
        alias: str,
        name: str,
        target: str,
        error: BaseException,
        *,
        params: dict[str, Any],
        distribution: str = "",
        version: str = "",
        traceback: str = "",
    ) -> dict[str, Any]:
        entry = jsonable(
            {
                "name": name,
                "alias": alias,
                "target": target,
                "status": "error",
                "error": str(error),
                "error_type": type(error.__cause__ or error).__name__,
                "params": params,
                "distribution": distribution,
                "version": version,
                "traceback": traceback,
            }
        )
        with _signals_deferred():
            self._append(entry)
        return entry

    def finish(self, status: str) -> None:
        self.doc["status"] = status
        self.doc["finished"] = _now()
        with _signals_deferred():
            self._append(None)


def _repair(text: str) -> dict[str, Any] | None:
    """The document of an append cut short: the header line and every complete entry line."""
    lines = text.split("\n")
    head = lines[0]
    if not head.endswith(',"explainers":['):
        return None
    try:
        doc = json.loads(head[: -len(',"explainers":[')] + "}")
    except json.JSONDecodeError:
        return None
    entries = []
    for line in lines[1:]:
        try:
            entries.append(json.loads(line[1:] if line.startswith(",") else line))
        except json.JSONDecodeError:
            break
    doc.update(explainers=[e for e in entries if isinstance(e, dict)], status="interrupted", finished=None)
    return doc


@dataclass
class RunResults:
    """A finished (or interrupted) run read back from disk."""

    out_dir: Path
    doc: dict[str, Any]
    explanations: dict[str, Explanation] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Where, status, and one line per result (at most 12); never arrays."""
        status = self.doc.get("status", "?")
        lines = [f"RunResults({str(self.out_dir)[-80:]!r}, status {status}, {len(self.explanations)} results, {len(self.failures)} failed)"]
        for alias, e in list(self.explanations.items())[:12]:
            lines.append(f"  {alias[:40]}: {e!r}"[:220])
        if len(self.explanations) > 12:
            lines.append(f"  ... and {len(self.explanations) - 12} more")
        return "\n".join(lines)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return list(self.doc.get("explainers", []))

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("status") != "ok"]


def load_results(out_dir: str | Path) -> RunResults:
    """Read ``results.json`` and every step's arrays (no pickle; array files memory-mapped, read when used)."""
    out_dir = Path(out_dir)
    path = out_dir / RESULTS_FILE
    if not path.exists():
        raise AeinterpError(f"no {RESULTS_FILE} in {out_dir}: is it the output folder of a run?")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AeinterpError(f"cannot read {path}: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        doc = _repair(text)
        if doc is None:
            raise AeinterpError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AeinterpError(f"{path} holds a JSON {type(doc).__name__}, not the object aeinterp writes; was it edited?")
    for section in ("data", "model", "recipe"):
        if not isinstance(doc.get(section, {}), dict):
            raise AeinterpError(f"{path}: `{section}` must be an object, got a JSON {type(doc[section]).__name__}; was the file edited?")
    entries = doc.get("explainers", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise AeinterpError(f"{path}: `explainers` must be a list of objects; was the file edited?")
    explanations = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry.get("alias"), str) or not isinstance(entry.get("name", ""), str):
            raise AeinterpError(f"{path}: explainers[{i}] has no valid `alias`; was the file edited?")
        if entry.get("status") == "ok":
            arrays = entry.get("arrays", f"{entry['alias']}.npz")
            if not isinstance(arrays, str) or Path(arrays).name != arrays:
                raise AeinterpError(f"{path}: explainers[{i}].arrays must be a file name in the run's folder, got {str(arrays)[:80]!r}")
            try:
                explanations[entry["alias"]] = Explanation.from_json(entry, out_dir / arrays)
            except Exception as exc:  # a tampered entry or npz: say which, never a traceback
                raise AeinterpError(
                    f"{path}: explainers[{i}] ({entry['alias']}) cannot be read back: {type(exc).__name__}: {str(exc)[:300]}"
                ) from None
    return RunResults(out_dir=out_dir, doc=doc, explanations=explanations)
