"""``OUT/results.json`` and the ``.npz`` files beside it: written atomically after every step.

The shape of ``results.json`` is a stable contract (see the README): fields are
added, never renamed. An interrupted run leaves every finished step readable.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import AeinterpError
from .explanation import Explanation, jsonable

__all__ = ["ResultsStore", "RunResults", "load_results", "RESULTS_FILE"]

RESULTS_FILE = "results.json"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, payload: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(jsonable(payload), fh, indent=1, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsStore:
    """Accumulates a run's results and rewrites ``results.json`` after each change."""

    def __init__(self, out_dir: Path, *, recipe: Any, model: dict[str, Any], data: dict[str, Any], plugins: list[dict[str, Any]]) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.doc: dict[str, Any] = {
            "aeinterp_version": __version__,
            "status": "running",
            "started": _now(),
            "finished": None,
            "recipe": recipe,
            "model": model,
            "data": data,
            "plugins": plugins,
            "explainers": [],
        }
        self._write()

    def _write(self) -> None:
        write_json_atomic(self.out_dir / RESULTS_FILE, self.doc)

    def add(self, alias: str, explanation: Explanation, **meta: Any) -> dict[str, Any]:
        """Write a step's arrays and entry; ``meta`` adds fields to the entry (e.g. ``cached=True``)."""
        arrays = f"{alias}.npz"
        explanation.save_arrays(self.out_dir / arrays)
        entry = {"alias": alias, "status": "ok", **explanation.to_json(), "arrays": arrays, **jsonable(meta)}
        entry = {"name": entry.pop("name"), **entry}
        self.doc["explainers"].append(entry)
        self._write()
        return entry

    def add_error(self, alias: str, name: str, target: str, error: BaseException, *, params: dict[str, Any], distribution: str = "", version: str = "", traceback: str = "") -> dict[str, Any]:
        entry = {
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
        self.doc["explainers"].append(jsonable(entry))
        self._write()
        return entry

    def finish(self, status: str) -> None:
        self.doc["status"] = status
        self.doc["finished"] = _now()
        self._write()


@dataclass
class RunResults:
    """A finished (or interrupted) run read back from disk."""

    out_dir: Path
    doc: dict[str, Any]
    explanations: dict[str, Explanation] = field(default_factory=dict)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return list(self.doc.get("explainers", []))

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("status") != "ok"]


def load_results(out_dir: str | Path) -> RunResults:
    """Read ``results.json`` and every step's arrays (no pickle)."""
    out_dir = Path(out_dir)
    path = out_dir / RESULTS_FILE
    if not path.exists():
        raise AeinterpError(f"no {RESULTS_FILE} in {out_dir}: is it the output folder of a run?")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AeinterpError(f"{path} is not valid JSON: {exc}") from None
    explanations = {}
    for entry in doc.get("explainers", []):
        if entry.get("status") == "ok":
            explanations[entry["alias"]] = Explanation.from_json(entry, out_dir / entry.get("arrays", f"{entry['alias']}.npz"))
    return RunResults(out_dir=out_dir, doc=doc, explanations=explanations)
