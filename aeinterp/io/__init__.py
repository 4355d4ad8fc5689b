"""Reading the user's data as they keep it: files (CSV, Parquet, ``.npy``, ``.h5ad``), bundled sets, splits.

:mod:`.readers` turns a file into samples and feature names without holding
more than it must; :mod:`.datasets` resolves a recipe's ``data:`` section (a
path or a bundled set) into a :class:`aeinterp.data.ArrayDataset` with its fit
and explain splits. Built on the base types only.
"""
