"""The toolkit explainers build on: shared numerical helpers, public for plugin authors.

Evaluating a model on many perturbed copies in memory-bounded chunks
(:mod:`.perturb`), the exact first-layer and kink updates that make those
copies cheap (:mod:`.first_layer`, :mod:`.kinks`), sample chunks with a
reduction and anytime rounds (:mod:`.chunks`), streaming accumulators and
per-sample arrays that spill to disk (:mod:`.streaming`), recurrent layers
unrolled for exact rules (:mod:`.recurrent`), and the checks every result
passes (:mod:`.checks`). It imports only the base types at the package's top
(``aeinterp.errors``, ``.model``, ``.data``, ``.targets``, ``.explainer``,
``.explanation``, ``.progress``, ``.device``): never recipes, runs or reports.
"""
