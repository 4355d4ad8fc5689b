"""Where models and explainers run: ``device: auto | cpu | cuda[:i] | mps``.

:func:`resolve_device` turns a recipe's, the CLI's (``--device``) or a Python
caller's spec into a ``torch.device`` and refuses one this machine does not
have with a clear message. ``auto`` picks the first CUDA GPU, then Apple's
``mps``, then the CPU. The model adapter moves the module there
(:class:`aeinterp.model.TorchAutoencoder` ``device=``), every explainer builds
its tensors with :func:`aeinterp.model.as_tensor` on the model's device, the
built-in trainer trains there, and ``torch.load`` maps saved tensors there.
"""

from __future__ import annotations

import re

import torch

from .errors import ModelError

__all__ = ["DEVICE_SPECS", "resolve_device", "device_name", "map_location"]

DEVICE_SPECS = "auto | cpu | cuda | cuda:<index> | mps"
_SPEC = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` for ``spec`` (``None`` means ``auto``).

    Raises :class:`aeinterp.errors.ModelError` for a malformed spec or a
    device this machine does not have (naming what it has).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    match = _SPEC.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ModelError(f"device {spec!r} is not one of {DEVICE_SPECS}")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise ModelError(f"device 'mps' is not available on this machine ({_available()}); use `device: auto` or `cpu`")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ModelError(
            f"device {text!r} is not available: this torch ({torch.__version__}) sees no CUDA GPU ({_available()}); use `device: auto` or `cpu`"
        )
    count = torch.cuda.device_count()
    i = int(index) if index is not None else torch.cuda.current_device()
    if i >= count:
        raise ModelError(f"device {text!r} does not exist: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", i)


def _available() -> str:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return "available: " + ", ".join(found)


def device_name(device: torch.device) -> str:
    """A short human-readable name: ``cpu``, ``cuda:0 (NVIDIA H200)``, ``mps``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def map_location(device: torch.device | str | None) -> torch.device:
    """What ``torch.load(map_location=...)`` gets: the resolved device (CPU when none is given)."""
    return torch.device("cpu") if device is None else resolve_device(device)
