"""How a run's objects travel to Ray workers: data files by their path, tensors on the CPU.

:class:`ByPath` sends an :class:`~aeinterp.data.ArrayDataset` whose samples
are a memory map of a ``.npy`` file as the file region (path, byte offset,
dtype, shape, size and modification time) instead of its bytes; unpickled in
a worker, it is the dataset again, mapped from the same file.
:func:`on_cpu` and :func:`tensors_to` put models and states on the CPU for
the trip (any node can unpickle them) and on a task's GPU after it.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
from typing import Any

import numpy as np

from ...data import ArrayDataset
from ...errors import DataError

__all__ = ["ByPath", "file_region", "on_cpu", "tensors_to"]


def file_region(x: np.ndarray) -> dict[str, Any] | None:
    """Where a C-contiguous memory map's elements lie in its file (also for a slice of a map); None if ``x`` is not one."""
    if not isinstance(x, np.memmap) or getattr(x, "_mmap", None) is None or not x.filename or not x.flags.c_contiguous:
        return None
    map_start = x.offset - x.offset % mmap.ALLOCATIONGRANULARITY  # where numpy began the map in the file
    offset = map_start + (x.ctypes.data - np.frombuffer(x._mmap, dtype=np.uint8).ctypes.data)  # type: ignore[attr-defined]
    stat = os.stat(x.filename)
    return {
        "path": str(x.filename),
        "offset": int(offset),
        "dtype": x.dtype.str,
        "shape": tuple(x.shape),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def _reopen(region: dict[str, Any], fields: dict[str, Any]) -> ArrayDataset:
    """The dataset again, in a worker, its samples mapped from the same file region (see :class:`ByPath`)."""
    path = region["path"]
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise DataError(
            f"a Ray worker on {os.uname().nodename} cannot open the data file {path} ({exc.strerror or exc}): every node must see it at "
            "this path (a shared filesystem), or set `data_from_path: false` in the executor section to send the samples through Ray's object store"
        ) from None
    if (stat.st_size, stat.st_mtime_ns) != (region["size"], region["mtime_ns"]):
        raise DataError(
            f"the data file {path} seen by a Ray worker on {os.uname().nodename} is not the one the run read (size or modification time differ)"
        )
    x = np.memmap(path, dtype=np.dtype(region["dtype"]), mode="r", offset=region["offset"], shape=region["shape"])
    return ArrayDataset(x=x, check_finite=False, **fields)


class ByPath:
    """An :class:`ArrayDataset` on a memory-mapped file, pickled as the file region; unpickled, it is the dataset again."""

    def __init__(self, data: ArrayDataset, region: dict[str, Any]) -> None:
        self.data, self.region = data, region

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        fields = {
            f.name: getattr(self.data, f.name) for f in dataclasses.fields(self.data) if f.init and f.name not in ("x", "check_finite")
        }
        return _reopen, (self.region, fields)


def tensors_to(tree: Any, device: Any) -> Any:
    """``tree`` (dicts, lists, tuples) with every torch tensor in it on ``device``; anything else as it is."""
    import torch
    from torch.utils import _pytree

    return _pytree.tree_map(lambda v: v.to(device) if isinstance(v, torch.Tensor) else v, tree)


def on_cpu(model: Any) -> Any:
    """``model`` itself when its parameters are on the CPU, else a copy there (what workers unpickle on any node)."""
    import copy

    import torch

    module = getattr(model, "module", None)
    if not isinstance(module, torch.nn.Module) or all(t.device.type == "cpu" for t in [*module.parameters(), *module.buffers()]):
        return model
    moved = copy.deepcopy(model)
    moved.module.to("cpu")
    return moved
