"""What the issue-27 checks cost: cache-entry verification, the terminal sanitiser, the code hash, the disk reservation.

Each check is timed against the work it guards, measured in the same run:
- loading a cached step with a 64 MiB ``local`` (hashes verified) vs. reading its files once;
- ``terminal_safe`` over 10,000 feature names vs. formatting them;
- ``code_fingerprint`` of a model vs. its weights' hash (``module_fingerprint`` without the code part);
- a 64 MiB spill with ``posix_fallocate`` vs. the same memmap fill without it.
Prints ratios and the peak RSS. Run: ``python bench/bench_hardening.py``.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aeinterp.explanation import Explanation
from aeinterp.resources import reserve
from aeinterp.run.cache import Cache, file_hash
from aeinterp.run.codehash import code_fingerprint
from aeinterp.text import terminal_safe


def act(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x) * SCALE


SCALE = 1.0


class Net(nn.Module):
    """A user's model: its module (this file), its helper and constant are hashed by source."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 16))
        self.dec = nn.Linear(16, 256)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return act(self.enc(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.encode(x))


def best(fn, repeat: int = 3) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    cache = Cache(root)
    local = np.random.default_rng(0).standard_normal((4096, 16, 256)).astype(np.float32)  # 64 MiB
    e = Explanation(
        importance=np.abs(local).mean(axis=0),
        feature_names=[f"f{i}" for i in range(256)],
        target_names=[f"z{i}" for i in range(16)],
        local=local,
    )
    key = "b" * 40
    cache.save_step(key, e)
    folder = cache._dir("steps", key)
    load = best(lambda: np.asarray(cache.load_step(key).local).sum())
    read = best(lambda: [p.read_bytes() for p in folder.glob("arrays*")])
    print(
        f"cached step with a 64 MiB local: load (hashes verified) {load * 1e3:.0f} ms, reading its files {read * 1e3:.0f} ms, ratio {load / read:.2f}"
    )

    names = [f"gene_{i}\x1b[31m" if i % 100 == 0 else f"gene_{i}" for i in range(10_000)]
    safe = best(lambda: [terminal_safe(n) for n in names])
    fmt = best(lambda: [f"{n} {i:.3g}" for i, n in enumerate(names)])
    print(f"terminal_safe over 10,000 names: {safe * 1e3:.1f} ms, formatting them {fmt * 1e3:.1f} ms, ratio {safe / fmt:.2f}")

    model = Net()
    code = best(lambda: code_fingerprint(model))
    weights = best(lambda: [p.detach().numpy().tobytes() for p in model.parameters()])
    print(f"code_fingerprint {code * 1e3:.2f} ms, reading the weights {weights * 1e3:.2f} ms")

    spill = root / "spill.npy"

    def fill(prealloc: bool) -> None:
        out = np.lib.format.open_memmap(spill, mode="w+", dtype=np.float32, shape=local.shape)
        if prealloc:
            reserve(spill, "bench")
        out[:] = local
        out.flush()
        del out
        spill.unlink()

    with_res, without = best(lambda: fill(True)), best(lambda: fill(False))
    print(f"64 MiB spill: with posix_fallocate {with_res * 1e3:.0f} ms, without {without * 1e3:.0f} ms, ratio {with_res / without:.2f}")
    print(f"hash of the 64 MiB arrays file: {best(lambda: file_hash(folder / 'arrays.npz')) * 1e3:.0f} ms")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
