"""Running recipes and steps: the runner, one step, executors, the cache and the results store.

:mod:`.runner` turns a validated recipe into steps and schedules them;
:mod:`.keys` gives each step its cache key; :mod:`.step` runs one explainer
with the model frozen and stamps its metadata; :mod:`.executors` says where
the work runs (this process or Ray); :mod:`.cache` keeps results by content;
:mod:`.results` writes ``results.json`` and the arrays atomically. Knows no
explainer by name and imports no report.
"""
