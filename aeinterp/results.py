"""``aeinterp.results``, as documented before the layers had folders: results.json and its arrays. The code is :mod:`aeinterp.run.results`."""

from .report import views as _views  # noqa: F401  (exp.plot on loaded results)
from .run.results import *  # noqa: F401,F403
from .run.results import __all__  # noqa: F401
