"""Where aeinterp keeps files of its own on this machine: the cache folder.

``$AEINTERP_CACHE_DIR``, else ``$XDG_CACHE_HOME/aeinterp``, else
``~/.cache/aeinterp``. The result cache (:mod:`aeinterp.run.cache`) lives
there by default, and plugins may keep their own files below it (the
dependence plugin's compiled kernels, say).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "default_cache_dir"]

CACHE_ENV = "AEINTERP_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$AEINTERP_CACHE_DIR``, else ``$XDG_CACHE_HOME/aeinterp``, else ``~/.cache/aeinterp``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "aeinterp"
