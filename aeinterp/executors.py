"""``aeinterp.executors``, as documented before the layers had folders: where a run's work runs. The code is :mod:`aeinterp.run.executors`."""

from .run.executors import *  # noqa: F401,F403
from .run.executors import __all__  # noqa: F401
