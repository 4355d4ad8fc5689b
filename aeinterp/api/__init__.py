"""The Python API: your own ``nn.Module`` and arrays, no recipe.

>>> import aeinterp
>>> exp = aeinterp.explain(net, X_test, "deepshap", background=X_train)   # doctest: +SKIP
>>> exp.to_pandas()                                                       # doctest: +SKIP

:func:`explain` explains exactly the rows of ``X`` (all of them, in order);
the background / baseline rows an explainer needs come from ``background``
(default: ``X`` itself). :func:`explain_all` runs several explainers and
returns an :class:`Explanations` with the agreement summary the report shows
and ``.report(out_dir)`` for the same HTML/PNG/``results.json`` as the CLI.
Both validate like recipes (unknown method with the nearest name, params
checked by the explainer's ``Params``) and reach the same
:func:`aeinterp.run_explainer` path as the runner.
"""

from .explain import explain, find_explainer
from .inputs import as_dataset, as_model, row_labels
from .results import Explanations, code_page, explain_all, latent_page, load

__all__ = [
    "explain",
    "explain_all",
    "Explanations",
    "as_dataset",
    "as_model",
    "find_explainer",
    "latent_page",
    "code_page",
    "load",
    "row_labels",
]
