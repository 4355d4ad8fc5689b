#!/usr/bin/env python3
"""Set up the development environment (if needed) and run the quickstart or the tests.

    python3 .ci/dev.py quickstart   # create .venv if absent, install, run configs/quickstart.yaml
    python3 .ci/dev.py test         # create .venv if absent, install, run the whole test suite

Needs only python3 (with venv). Installs the core with its extras and every
plugin under plugins/ in editable mode, pinned by .ci/constraints.txt (which
pins torch to the CPU build). Re-installs when a pyproject.toml or the
constraints change. Extra arguments after `test` go to pytest.
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
EXTRAS = "dev,shap,symbolic,captum,anndata,parquet"


def _plugins() -> list[Path]:
    return sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())


def _fingerprint() -> str:
    h = hashlib.sha256()
    for f in [ROOT / "pyproject.toml", CONSTRAINTS, *(p / "pyproject.toml" for p in _plugins())]:
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
    cmd: list[str | Path] = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", CONSTRAINTS, "-e", f".[{EXTRAS}]"]
    for plugin in _plugins():
        cmd += ["-e", plugin.relative_to(ROOT).as_posix()]
    _run(cmd)
    stamp.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("quickstart", "test", "setup"):
        print(__doc__)
        return 2
    ensure_env()
    env = {**os.environ, "MPLBACKEND": "Agg"}
    try:
        if argv[0] == "quickstart":
            _run([BIN / "aeinterp", "run", "configs/quickstart.yaml", *argv[1:]], env=env)
        elif argv[0] == "test":
            _run([PY, "-m", "pytest", *argv[1:]], env=env)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
