"""The plugin machinery: hook specifications, the plugin manager and the explainer registry.

:mod:`.hookspecs` holds the ``aeinterp_*`` hooks (one small module);
:mod:`.manager` builds a pluggy manager per run from the ``aeinterp``
entry-point group (with the allow/block/trace switches); :mod:`.registry`
checks what plugins register. The core imports no explainer: they arrive here.
"""

from .manager import *  # noqa: F401,F403  (PluginHost and friends, as `aeinterp.plugins` always offered)
from .manager import __all__  # noqa: F401
