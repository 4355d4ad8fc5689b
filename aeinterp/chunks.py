"""``aeinterp.chunks``, as documented before the layers had folders: sample chunks, reductions and executors' protocol. The code is :mod:`aeinterp.toolkit.chunks`."""

from .toolkit.chunks import *  # noqa: F401,F403
from .toolkit.chunks import __all__  # noqa: F401
