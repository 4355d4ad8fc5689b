"""Is a Julia runtime available for PySR, without importing pysr?

Importing ``pysr`` starts ``juliacall``, which asks ``juliapkg`` for a Julia
executable and, when it finds none, tries to download one; on a machine with
no internet that import fails slowly and obscurely. :func:`find_julia` looks
where juliacall and juliapkg look, in their order, and touches nothing:

1. ``PYTHON_JULIACALL_BINDIR`` (juliacall: the directory holding ``julia``);
2. ``PYTHON_JULIACALL_EXE`` and ``PYTHON_JULIAPKG_EXE`` (an executable path);
3. ``julia`` on ``PATH`` (juliaup installs its launcher there);
4. the Julia that juliapkg itself installed into its project folder
   (``PYTHON_JULIAPKG_PROJECT``, else ``<venv>/julia_env``, else
   ``~/.julia/environments/pyjuliapkg``), under ``pyjuliapkg/install/bin``.

``PYTHON_JULIAPKG_OFFLINE=yes`` forbids juliapkg to download anything, so
then PySR's Julia packages must already be installed (run ``import pysr`` once
while online).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aeinterp.errors import PluginError

__all__ = ["JuliaStatus", "find_julia", "PySRUnavailableError", "pysr_problems", "INSTALL_HELP"]

_EXE = "julia.exe" if os.name == "nt" else "julia"

INSTALL_HELP = (
    "To use backend: pysr, install Julia (1.10 or newer) from https://julialang.org/downloads "
    "or with juliaup (`curl -fsSL https://install.julialang.org | sh`), then either put `julia` on PATH "
    "or set PYTHON_JULIAPKG_EXE=/path/to/julia/bin/julia (or PYTHON_JULIACALL_BINDIR=/path/to/julia/bin); "
    "run `python -c 'import pysr'` once while online so PySR installs its Julia packages, and set "
    "PYTHON_JULIAPKG_OFFLINE=yes on machines without internet. "
    "Or use backend: pyoperon (the default), which needs no Julia."
)


class PySRUnavailableError(PluginError):
    """The pysr backend cannot run here: pysr is not installed or no Julia runtime was found."""


@dataclass(frozen=True)
class JuliaStatus:
    """Where a Julia executable was found (``executable`` None: nowhere), and what was looked at."""

    executable: str | None
    source: str | None
    offline: bool
    looked: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.executable is not None


def _runnable(path: str | Path | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    return str(p) if p.is_file() and os.access(p, os.X_OK) else None


def _juliapkg_project(env: Mapping[str, str]) -> Path:
    """The folder juliapkg keeps its environment (and any Julia it installed) in."""
    if env.get("PYTHON_JULIAPKG_PROJECT"):
        return Path(env["PYTHON_JULIAPKG_PROJECT"])
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "julia_env"
    if env.get("CONDA_PREFIX"):
        return Path(env["CONDA_PREFIX"]) / "julia_env"
    depot = env.get("JULIA_DEPOT_PATH", "").split(os.pathsep)[0] or str(Path.home() / ".julia")
    return Path(depot) / "environments" / "pyjuliapkg"


def find_julia(environ: Mapping[str, str] | None = None) -> JuliaStatus:
    """Find a Julia executable the way juliacall/juliapkg would, without running or installing anything."""
    env = os.environ if environ is None else environ
    offline = env.get("PYTHON_JULIAPKG_OFFLINE", "").strip().lower() in ("yes", "true", "1")
    looked: list[str] = []

    bindir = env.get("PYTHON_JULIACALL_BINDIR")
    if bindir:
        exe = _runnable(Path(bindir) / _EXE)
        if exe:
            return JuliaStatus(exe, "PYTHON_JULIACALL_BINDIR", offline, looked)
        looked.append(f"PYTHON_JULIACALL_BINDIR={bindir} (no {_EXE} there)")
    else:
        looked.append("PYTHON_JULIACALL_BINDIR (unset)")

    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE"):
        value = env.get(var)
        if value:
            exe = _runnable(value) or _runnable(shutil.which(value, path=env.get("PATH", "")))
            if exe:
                return JuliaStatus(exe, var, offline, looked)
            looked.append(f"{var}={value} (not an executable file)")
        elif var == "PYTHON_JULIAPKG_EXE":
            looked.append(f"{var} (unset)")

    on_path = _runnable(shutil.which("julia", path=env.get("PATH", "")))
    if on_path:
        return JuliaStatus(on_path, "PATH", offline, looked)
    looked.append("`julia` on PATH (not found)")

    installed = _juliapkg_project(env) / "pyjuliapkg" / "install" / "bin" / _EXE
    exe = _runnable(installed)
    if exe:
        return JuliaStatus(exe, "juliapkg install", offline, looked)
    looked.append(f"juliapkg's own install {installed} (absent)")
    return JuliaStatus(None, None, offline, looked)


def pysr_problems(*, allow_julia_install: bool = False, environ: Mapping[str, str] | None = None) -> list[str]:
    """Everything that stops the pysr backend from running here (empty list: it can run)."""
    import importlib.util

    problems = []
    if importlib.util.find_spec("pysr") is None:
        problems.append("the Python package pysr is not installed (install it with: pip install 'aeinterp[pysr]')")
    status = find_julia(environ)
    if not status.available:
        if allow_julia_install and not status.offline:
            return problems  # juliapkg will download Julia on first import (needs internet)
        why = " and PYTHON_JULIAPKG_OFFLINE is set, so juliapkg will not download one" if status.offline else ""
        problems.append(f"no Julia runtime was found{why}; looked at: " + "; ".join(status.looked))
    return problems


def require_pysr(
    *, allow_julia_install: bool = False, environ: Mapping[str, str] | None = None, plugin: str = "symbolic_regression"
) -> None:
    """Raise :class:`PySRUnavailableError` with install instructions unless the pysr backend can run."""
    problems = pysr_problems(allow_julia_install=allow_julia_install, environ=environ)
    if problems:
        raise PySRUnavailableError(
            "the pysr backend cannot run: " + "; ".join(problems) + ". " + INSTALL_HELP,
            plugin=plugin,
            distribution="aeinterp-symbolic",
        )
