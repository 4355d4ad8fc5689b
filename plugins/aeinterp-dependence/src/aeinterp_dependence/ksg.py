"""The Kraskov (KSG) mutual-information matrix between feature groups and targets.

``mi_matrix`` estimates MI(group_g ; t_j) for every group and every target
column in one call:

* scalar continuous features against continuous targets: Kraskov et al.'s
  algorithm 1 with the max-norm, exactly as scikit-learn's
  ``mutual_info_regression`` computes it (same preprocessing, same counts);
* scalar discrete features: Ross' estimator for a discrete / continuous pair,
  as scikit-learn does for features it is told are discrete;
* groups of several elements (a sequence feature over its steps, an image
  patch): the multivariate KSG estimator, with the max-norm over the group's
  standardised elements and the target.

Scalar pairs run in the compiled kernels of :mod:`._kernels` when numba is
installed (all pairs in parallel, sorted orders shared across the matrix), and
otherwise, like every multivariate group, in chunked brute-force torch code
(``O(N^2)`` per pair).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import digamma

from aeinterp.errors import DataError
from aeinterp.progress import NullProgress, Progress

__all__ = ["Prepared", "prepare", "detect_discrete", "mi_matrix", "has_numba", "entropy_discrete", "ensure_numba_cache", "kernel_status"]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def ensure_numba_cache() -> str:
    """The folder numba caches the compiled kernels in, so only a machine's first run compiles them.

    numba writes beside the sources (``__pycache__``) or, where that is
    read-only, in the user's cache folder. Where neither can be written (a
    read-only install and home), ``NUMBA_CACHE_DIR`` is pointed at
    ``<aeinterp cache>/numba`` or a per-user temporary folder; a
    ``NUMBA_CACHE_DIR`` set by the user is always kept.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    here = Path(__file__).resolve().parent / "__pycache__"
    if _writable(here):
        return str(here)
    xdg = os.environ.get("XDG_CACHE_HOME")
    user = (Path(xdg) if xdg else Path.home() / ".cache") / "numba"
    if _writable(user):
        return str(user)
    from aeinterp.paths import default_cache_dir

    fallback = default_cache_dir() / "numba"
    if not _writable(fallback):
        fallback = Path(tempfile.gettempdir()) / f"aeinterp-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    os.environ["NUMBA_CACHE_DIR"] = str(fallback)
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:  # numba read its settings already
        numba_config.CACHE_DIR = str(fallback)
    return str(fallback)


def kernel_counts(kernels: Sequence[Any]) -> tuple[int, int]:
    """(cache misses, cache hits) so far of numba dispatchers, from their own counters."""
    return (sum(sum(k.stats.cache_misses.values()) for k in kernels), sum(sum(k.stats.cache_hits.values()) for k in kernels))


def kernel_status(kernels: Sequence[Any], seconds: float, cache_dir: str, before: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """Whether a call compiled the kernels or loaded them from numba's disk cache (counters since ``before``)."""
    misses, hits = (a - b for a, b in zip(kernel_counts(kernels), before))
    compiled = misses > 0
    note = (
        f"numba compiled the KSG kernels in this run ({seconds:.1f} s, once per machine); later runs load them from {cache_dir}"
        if compiled
        else f"KSG kernels loaded from numba's cache ({cache_dir})"
        if hits
        else "KSG kernels already loaded in this process"
    )
    return {
        "compiled": compiled,
        "cache_hits": hits,
        "cache_misses": misses,
        "seconds": round(seconds, 3),
        "cache_dir": cache_dir,
        "note": note,
    }


def has_numba() -> bool:
    """Whether the compiled kernels can be used."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def detect_discrete(x: np.ndarray, max_levels: int) -> np.ndarray:
    """Columns of ``x`` (N, D) with at most ``max_levels`` distinct values (``max_levels=0``: none).

    A column also needs its values to repeat, on average at least twice each
    (``levels <= N / 2``): with few samples every continuous column has few
    distinct values (20 samples, 20 values), and taking those for labels made
    every mutual information exactly 0.
    """
    if max_levels <= 0 or x.shape[0] == 0:
        return np.zeros(x.shape[1], dtype=bool)
    srt = np.sort(x, axis=0)
    levels = 1 + (np.diff(srt, axis=0) != 0).sum(axis=0)
    return (levels <= max_levels) & (2 * levels <= x.shape[0])


def entropy_discrete(codes: np.ndarray) -> float:
    """Plug-in entropy (nats) of integer codes."""
    p = np.bincount(codes) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@dataclass(frozen=True)
class Prepared:
    """Data after scikit-learn's preprocessing, ready for the estimators.

    ``x`` (N, D) float64: continuous columns scaled to unit variance (no
    centring) plus noise of relative size 1e-10; discrete columns untouched.
    ``z`` (N, T) likewise for the targets. ``codes`` (D, N) int label codes for
    discrete columns (zeros elsewhere), ``n_codes`` their number of labels.
    """

    x: np.ndarray
    z: np.ndarray
    discrete: np.ndarray
    codes: np.ndarray
    n_codes: np.ndarray


def prepare(x: np.ndarray, z: np.ndarray, discrete: np.ndarray, noise_seed: int) -> Prepared:
    """Apply ``mutual_info_regression``'s preprocessing, noise included.

    With ``random_state=noise_seed``, scikit-learn draws the feature noise
    first (``N x n_continuous``) and then the target noise (``N``) from a fresh
    ``RandomState`` on every call, so every target gets the same noise vector:
    this reproduces it, so results match scikit-learn's to rounding.
    """
    from sklearn.preprocessing import scale

    x = np.array(x, dtype=np.float64)
    z = np.array(z, dtype=np.float64)
    n = x.shape[0]
    rs = np.random.RandomState(noise_seed)
    cont = ~discrete
    if cont.any():
        xc = scale(x[:, cont], with_mean=False, copy=True)
        means = np.maximum(1, np.mean(np.abs(xc), axis=0))
        xc += 1e-10 * means * rs.standard_normal(size=(n, int(cont.sum())))
        x[:, cont] = xc
    else:
        rs.standard_normal(size=(n, 0))
    noise = rs.standard_normal(size=n)
    z = scale(z, with_mean=False, copy=True)
    z += 1e-10 * np.maximum(1, np.mean(np.abs(z), axis=0)) * noise[:, None]
    codes = np.zeros((x.shape[1], n), dtype=np.int64)
    n_codes = np.ones(x.shape[1], dtype=np.int64)
    for col in np.flatnonzero(discrete):
        _, inv = np.unique(x[:, col], return_inverse=True)
        codes[col] = inv.reshape(-1)
        n_codes[col] = int(inv.max()) + 1
    return Prepared(x=x, z=z, discrete=discrete.copy(), codes=codes, n_codes=n_codes)


def _sorted(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise sort of ``a`` (R, N): values, argsort, rank of each entry."""
    order = np.argsort(a, axis=1, kind="stable")
    srt = np.take_along_axis(a, order, axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(a.shape[1])[None, :].repeat(a.shape[0], 0), axis=1)
    return np.ascontiguousarray(srt), np.ascontiguousarray(order), np.ascontiguousarray(rank)


def mi_matrix(
    prepared: Prepared,
    groups: Sequence[np.ndarray],
    k: int,
    *,
    backend: str = "auto",
    progress: Progress | None = None,
    memory_mb: float = 256.0,
    status: dict[str, Any] | None = None,
) -> tuple[np.ndarray, str]:
    """``(n_groups, T)`` MI matrix (nats) and the backend used for the scalar pairs.

    With the numba backend, ``status`` (if given) receives :func:`kernel_status`:
    whether this call compiled the kernels or loaded them from the disk cache.

    ``groups`` are index arrays into the columns of ``prepared.x``. Single
    columns use the scalar estimators (continuous or discrete); larger groups
    the multivariate KSG estimator (their discrete members are treated as
    continuous, a documented simplification).
    """
    progress = progress or NullProgress()
    n = prepared.x.shape[0]
    if n <= k:
        raise DataError(f"mutual information with n_neighbors={k} needs more than {k} samples, got {n}")
    if backend == "auto":
        backend = "numba" if has_numba() else "torch"
    psi = digamma(np.arange(n + 1, dtype=np.float64))
    psi[0] = 0.0  # never used; keeps the table finite
    n_t = prepared.z.shape[1]
    out = np.zeros((len(groups), n_t))
    single = np.array([len(g) == 1 for g in groups], dtype=bool)
    cols = np.array([int(g[0]) if len(g) == 1 else -1 for g in groups])
    disc = np.zeros(len(groups), dtype=bool)
    disc[single] = prepared.discrete[cols[single]]
    cont_rows = np.flatnonzero(single & ~disc)
    disc_rows = np.flatnonzero(single & disc)
    multi_rows = np.flatnonzero(~single)
    zt = np.ascontiguousarray(prepared.z.T)
    if backend == "numba":
        cache_dir = ensure_numba_cache()
        started = time.perf_counter()
        from ._kernels import ksg_cd, ksg_eps, ksg_finish

        before = kernel_counts((ksg_eps, ksg_finish, ksg_cd))

        zsrt, zord, zrank = _sorted(zt)
        zrow = np.ascontiguousarray(prepared.z)
        zgap = _gaps(zsrt, zrank, k)
        # work arrays (eps float64 + nx int32 per feature, target and sample) allocated once and reused:
        # fresh ones per chunk spent ~10 % of the run on first-touch page faults; 32 MiB (28 features at
        # n = 950, T = 100) keeps ksg_finish within ~5 % of its 64-feature speed
        step = max(1, min(64, int(min(memory_mb, 32.0) * 2**20 // (12 * n * n_t))))
        chunks = _chunks(len(cont_rows), step)
        width = min(step, len(cont_rows))
        eps_buf, nx_buf = np.empty((width, n_t, n)), np.empty((width, n_t, n), dtype=np.int32)
        # empty stand-ins for the arguments a call does not use (every call has the same types: one compile)
        no_rows, no_srt, no_rank = np.zeros((0, n), dtype=np.uint8), np.empty((0, n)), np.empty((0, n), dtype=np.int64)
        no_eps, no_nx, no_acc = np.empty((0, 0, 0)), np.empty((0, 0, 0), dtype=np.int32), np.empty((0, 0))
        for rows in progress.track(chunks, total=len(chunks), description="KSG (continuous)"):
            ids = cont_rows[rows]
            xt = np.ascontiguousarray(prepared.x[:, cols[ids]].T)
            xsrt, xord, xrank = _sorted(xt)
            # (target, sample) where the target is sparse next to the features: few samples near in z, many
            # in x, so walking x (per feature, all targets) would visit many; those walk z instead (per
            # target, all features), the rest walk x. Every (feature, target, sample) is counted once.
            along_z = (zgap > ROUTE * np.median(_gaps(xsrt, xrank, k), axis=0)).astype(np.uint8)
            eps, nx = eps_buf[: len(ids)], nx_buf[: len(ids)]
            ksg_eps(xt, xsrt, xord, xrank, zrow, k, no_rows, along_z, eps, nx, no_srt, no_rank, psi, no_acc)
            acc = np.zeros((len(ids), n_t))
            ksg_finish(eps, nx, zsrt, zord, psi, 1 - along_z, acc)
            if along_z.any():
                acc_z = np.zeros((n_t, len(ids)))
                xrow = np.ascontiguousarray(xt.T)
                ksg_eps(zt, zsrt, zord, zrank, xrow, k, along_z, no_rows, no_eps, no_nx, xsrt, xrank, psi, acc_z)
                acc += acc_z.T
            out[ids] = np.maximum(0.0, psi[n] + psi[k] - acc / n)
        if len(disc_rows):
            block = np.empty((len(disc_rows), n_t))
            ksg_cd(prepared.codes[cols[disc_rows]], prepared.n_codes[cols[disc_rows]], zt, zord, k, psi, block)
            out[disc_rows] = block
        if status is not None:
            status.update(kernel_status((ksg_eps, ksg_finish, ksg_cd), time.perf_counter() - started, cache_dir, before))
    elif backend == "torch":
        multi_rows = np.concatenate([cont_rows, multi_rows])
        if len(disc_rows):
            out[disc_rows] = _cd_torch(prepared, cols[disc_rows], k, psi, progress, memory_mb)
    else:
        raise ValueError(f"unknown KSG backend {backend!r}")
    if len(multi_rows):
        out[multi_rows] = _cc_torch(prepared, [groups[g] for g in multi_rows], k, psi, progress, memory_mb)
    return out, backend


ROUTE = 4.0  # a (target, sample) walks z where its z-gap exceeds ROUTE x the features' median x-gap (3-4 measured best)


def _gaps(srt: np.ndarray, rank: np.ndarray, k: int) -> np.ndarray:
    """Per row and sample, the width of the window of ``2h`` ranks around it, ``h ~ sqrt(k N) / 2``.

    The typical x-window a k-th joint neighbour search must cover (``nx`` is
    about ``sqrt(k N)`` for independent pairs): a wide one means the sample
    lies where the row is sparse.
    """
    n = srt.shape[1]
    h = max(1, int(round(np.sqrt(k * n) / 2)))
    up = np.take_along_axis(srt, np.minimum(rank + h, n - 1), axis=1)
    down = np.take_along_axis(srt, np.maximum(rank - h, 0), axis=1)
    return up - down


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _target_chunk(n: int, memory_mb: float) -> int:
    return max(1, int(memory_mb * 2**20 // (3 * 8 * n * n)))


def _cc_torch(
    prepared: Prepared, groups: Sequence[np.ndarray], k: int, psi: np.ndarray, progress: Progress, memory_mb: float
) -> np.ndarray:
    """Multivariate KSG by brute force: max-norm distances, k-th neighbour, marginal counts."""
    x = torch.from_numpy(prepared.x)
    z = torch.from_numpy(prepared.z)
    n, n_t = z.shape
    psi_t = torch.from_numpy(psi)
    out = torch.empty((len(groups), n_t), dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.bool)
    step = _target_chunk(n, memory_mb)
    for g in progress.track(range(len(groups)), total=len(groups), description="KSG (groups)"):
        xg = x[:, torch.as_tensor(groups[g])]
        dx = (xg[:, None, :] - xg[None, :, :]).abs().amax(dim=2)  # (N, N) max-norm
        for s in range(0, n_t, step):
            zc = z[:, s : s + step].T  # (t, N)
            dz = (zc[:, :, None] - zc[:, None, :]).abs()  # (t, N, N)
            joint = torch.maximum(dz, dx).masked_fill_(eye, float("inf"))
            eps = joint.kthvalue(k, dim=2).values.unsqueeze(2)
            nx = (dx < eps).sum(dim=2) - 1
            ny = (dz < eps).sum(dim=2) - 1
            mi = psi[n] + psi[k] - (psi_t[nx + 1] + psi_t[ny + 1]).mean(dim=1)
            out[g, s : s + step] = mi.clamp_min(0.0)
    return out.numpy()


def _cd_torch(prepared: Prepared, cols: np.ndarray, k: int, psi: np.ndarray, progress: Progress, memory_mb: float) -> np.ndarray:
    """Ross' discrete/continuous estimator by brute force (used without numba)."""
    z = torch.from_numpy(prepared.z)
    n, n_t = z.shape
    psi_t = torch.from_numpy(psi)
    out = torch.zeros((len(cols), n_t), dtype=torch.float64)
    step = _target_chunk(n, memory_mb)
    for r in progress.track(range(len(cols)), total=len(cols), description="KSG (discrete)"):
        codes = torch.from_numpy(prepared.codes[cols[r]])
        counts = torch.bincount(codes)[codes]
        keep = counts > 1
        if not bool(keep.any()):
            continue
        c, lab, cnt = z[keep], codes[keep], counts[keep]
        m_n = c.shape[0]
        kk = torch.clamp(cnt - 1, max=k)
        other = (lab[:, None] != lab[None, :]) | torch.eye(m_n, dtype=torch.bool)
        kmax = int(kk.max())
        for s in range(0, n_t, step):
            zc = c[:, s : s + step].T
            dz = (zc[:, :, None] - zc[:, None, :]).abs()
            within = dz.masked_fill(other, float("inf"))
            radius = within.topk(kmax, dim=2, largest=False).values.gather(2, (kk - 1).expand(zc.shape[0], m_n).unsqueeze(2))
            m = (dz < radius).sum(dim=2)
            mi = psi[m_n] + (psi_t[kk] - psi_t[cnt]).mean() - psi_t[m].mean(dim=1)
            out[r, s : s + step] = mi.clamp_min(0.0)
    return out.numpy()
