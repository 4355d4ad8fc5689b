"""``aeinterp.perturb``, as documented before the layers had folders: perturbed copies in bounded chunks. The code is :mod:`aeinterp.toolkit.perturb`."""

from .toolkit.perturb import *  # noqa: F401,F403
from .toolkit.perturb import __all__  # noqa: F401
