#!/usr/bin/env python3
"""Set up the development environment (if needed) and run the quickstart, the tests or the linters.

    python3 .ci/dev.py setup        # create .venv if absent and install (nothing else)
    python3 .ci/dev.py quickstart   # setup, then run configs/quickstart.yaml
    python3 .ci/dev.py test         # setup, then the whole suite in parallel (pytest-xdist, -n auto)
    python3 .ci/dev.py test --fast  # the same without the tests marked slow (browser, Ray, wheel, ...)
    python3 .ci/dev.py lint         # ruff (lint + format check), import-linter's layer contracts, mypy

Needs only python3 (with venv). Installs the one `aeinterp` distribution (core
and every built-in explainer under plugins/) in editable mode with its extras,
pinned by .ci/constraints.txt (which pins torch to the CPU build). Re-installs
when pyproject.toml or the constraints change. Extra arguments after
`quickstart` go to `aeinterp run`, after `test` to pytest (``-n 0`` runs the
tests in one process, ``-p no:xdist`` without xdist). ``AEINTERP_VENV``
chooses another virtual environment folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("AEINTERP_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
EXTRAS = "dev,shap,symbolic,captum,ray,anndata,parquet,docs,scverse,scvi"


# the built-ins were separate distributions before 0.2; left installed they would claim every name twice
LEGACY = [f"aeinterp-{p}" for p in ("deepshap", "dependence", "gradients", "invariance", "perturbation", "symbolic", "visualize")]


def _fingerprint() -> str:
    h = hashlib.sha256()
    for f in [ROOT / "pyproject.toml", CONSTRAINTS]:
        h.update(f.relative_to(ROOT).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _run(cmd: list[str | Path], **kw) -> None:  # noqa: ANN003
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def ensure_env() -> None:
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".aeinterp-installed"
    want = _fingerprint()
    if stamp.exists() and stamp.read_text() == want:
        return
    pip: list[str | Path] = [PY, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "uninstall", "-y", *LEGACY], stderr=subprocess.DEVNULL)
    _run([*pip, "install", "-c", CONSTRAINTS, "-e", f".[{EXTRAS}]"])
    stamp.write_text(want)


LINT: list[list[str | Path]] = [
    [PY, "-m", "ruff", "check", "."],
    [PY, "-m", "ruff", "format", "--check", "."],
    [BIN / "lint-imports"],  # import-linter: the layer contracts in pyproject.toml
    [PY, "-m", "mypy"],  # the core (aeinterp/), as configured in pyproject.toml
]


def _pytest_args(args: list[str]) -> list[str]:
    """``--fast`` deselects the slow tests; the suite runs on every core unless ``-n``/``-p no:xdist`` says otherwise."""
    out = []
    for a in args:
        out += ["-m", "not slow"] if a == "--fast" else [a]
    if not any(a == "-n" or a.startswith("-n") or a == "no:xdist" for a in out):
        out = ["-n", "auto", *out]
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("quickstart", "test", "setup", "lint"):
        print(__doc__)
        return 2
    ensure_env()
    env = {**os.environ, "MPLBACKEND": "Agg"}
    try:
        if argv[0] == "quickstart":
            _run([BIN / "aeinterp", "run", "configs/quickstart.yaml", *argv[1:]], env=env)
        elif argv[0] == "test":
            _run([PY, "-m", "pytest", *_pytest_args(argv[1:])], env=env)
        elif argv[0] == "lint":
            for cmd in LINT:
                _run(cmd, env=env)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
