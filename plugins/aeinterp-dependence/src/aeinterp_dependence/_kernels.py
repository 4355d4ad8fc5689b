"""Compiled (numba) KSG kernels for a whole matrix of scalar pairs at once.

Imported only when an explanation runs (numba is an optional dependency: see
:mod:`aeinterp_dependence.ksg` for the pure-torch path used without it).

Both kernels run in parallel over all (feature, target) pairs and share the
per-feature and per-target sorted orders computed once by the caller, so a
matrix of D x T pairs costs D + T sorts instead of D x T tree builds. Counts
follow scikit-learn's ``_compute_mi_cc`` / ``_compute_mi_cd`` exactly: the
joint k-th neighbour distance ``eps`` is found with the Chebyshev metric, and
marginal counts take the points strictly closer than ``eps`` (scikit-learn's
``query_radius`` with ``nextafter(eps, 0)``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["ksg_eps", "ksg_finish", "ksg_cd"]


@njit(cache=True, inline="always")
def _count_within(srt: np.ndarray, pos: int, v: float, eps: float) -> int:
    """Points of the sorted array ``srt`` within ``< eps`` of ``v = srt[pos]`` (self included)."""
    n = srt.shape[0]
    # left boundary: first p in [0, pos] with v - srt[p] < eps
    lo, hi = 0, pos
    while lo < hi:
        mid = (lo + hi) // 2
        if v - srt[mid] < eps:
            hi = mid
        else:
            lo = mid + 1
    left = lo
    # right boundary: last p in [pos, n - 1] with srt[p] - v < eps
    lo, hi = pos, n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if srt[mid] - v < eps:
            lo = mid
        else:
            hi = mid - 1
    return lo - left + 1


@njit(cache=True, inline="always")
def _keep3(best, a, c, dx):  # noqa: ANN001
    """Insert the joint distance ``max(c, dx)`` into target ``a``'s three best (``best[:, a]``, ascending), branch-free."""
    dj = c if c > dx else dx
    x0 = best[0, a]
    x1 = best[1, a]
    x2 = best[2, a]
    m1 = x1 if x1 > dj else dj
    best[2, a] = x2 if x2 < m1 else m1
    m0 = x0 if x0 > dj else dj
    best[1, a] = x1 if x1 < m0 else m0
    best[0, a] = x0 if x0 < dj else dj


RETIRE = 2  # pack the searching targets once at least 1/RETIRE of them are done


@njit(cache=True, inline="always")
def _strip(srt, j, pos, v, eps):  # noqa: ANN001
    """Samples other than ``pos`` within ``< eps`` of ``v = srt[j, pos]`` in the sorted row ``srt[j]``."""
    n = srt.shape[1]
    lo, hi = 0, pos
    while lo < hi:
        mid = (lo + hi) // 2
        if v - srt[j, mid] < eps:
            hi = mid
        else:
            lo = mid + 1
    left = lo
    lo, hi = pos, n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if srt[j, mid] - v < eps:
            lo = mid
        else:
            hi = mid - 1
    return lo - left


@njit(parallel=True, cache=True)
def ksg_eps(x, xsrt, xord, xrank, zrow, k, rows_on, drop, eps_out, nx_out, zsrt, zrank, psi, acc_out):  # noqa: ANN001, PLR0913
    """Joint k-th neighbour distances for every feature row of ``x`` (F, N) and every target.

    ``zrow`` is the targets as ``(N, T)`` (row-major, one sample per row);
    ``xsrt``, ``xord``, ``xrank``: each feature row sorted, its argsort and
    its ranks. Writes
    ``eps_out[f, j, s]`` (the max-norm distance from sample ``s`` to its k-th
    neighbour in the (x_f, z_j) plane) and ``nx_out[f, j, s]`` (how many other
    samples have ``|x_f - x_f[s]| < eps``).

    For each feature and sample, the other samples are visited by increasing
    ``|x_f - x_f[s]|``, and the k best distances of the targets still
    searching are updated together (a branch-free insertion that vectorises).
    A target is done once its k-th best is no larger than the current
    x-distance (no unvisited sample can be closer). Done targets are retired
    and the searching ones packed together (their k best, their own value,
    their index; each visit gathers their values of the visited sample), so
    each target costs about the samples its own k-th neighbour needs, not the
    slowest target's. ``nx`` is a lower bound in the ascending x-distances
    visited, the binary searches of all targets run level by level
    (independent, so the processor overlaps them).
    The loops index the 2-d arrays directly: a view per visited sample (an
    array object with a reference count) cost more than the distances.

    ``rows_on`` (F, N) uint8, or no rows for all: compute row ``f`` at sample
    ``s`` only where set. ``drop`` (T, N) uint8, or no rows for none: targets
    ``j`` to give up at sample ``s`` when the searching ones are first packed
    (their entries are then left unfinished; the caller computes them with
    the roles of x and z swapped, see :func:`aeinterp_dependence.ksg.mi_matrix`).
    ``zsrt``, ``zrank`` (T, N), when they have rows: instead of writing
    ``eps_out`` and ``nx_out``, count ``|z_j - z_j[s]| < eps`` too (binary
    searches in the sorted target rows) and add ``psi[nx + 1] + psi[ny + 1]``
    to ``acc_out[f, j]``: for the few rows ``rows_on`` selects this is cheaper
    than :func:`ksg_finish`, whose shared neighbour list pays for every sample.
    """
    n_f, n = x.shape
    n_t = zrow.shape[1]
    all_rows = rows_on.shape[0] == 0
    direct = zsrt.shape[0] > 0
    no_drop = drop.shape[0] == 0
    for f in prange(n_f):
        best = np.empty((k, n_t), dtype=np.float64)
        zsa = np.empty(n_t, dtype=np.float64)
        idx = np.empty(n_t, dtype=np.int64)
        done = np.empty(n_t, dtype=np.float64)
        base = np.empty(n_t, dtype=np.int64)
        visited = np.empty(n, dtype=np.float64)
        for s in range(n):
            if not all_rows and rows_on[f, s] == 0:
                continue
            vx = x[f, s]
            px = xrank[f, s]
            best[:, :] = np.inf
            for j in range(n_t):
                zsa[j] = zrow[s, j]
                idx[j] = j
            na = n_t
            packed = False
            lo, hi = px - 1, px + 1
            steps = 0
            while na > 0:
                dl = vx - xsrt[f, lo] if lo >= 0 else np.inf
                dr = xsrt[f, hi] - vx if hi < n else np.inf
                if dl <= dr:
                    if lo < 0:
                        break  # every sample visited
                    t = xord[f, lo]
                    lo -= 1
                    dx = dl
                else:
                    t = xord[f, hi]
                    hi += 1
                    dx = dr
                visited[steps] = dx
                steps += 1
                if k == 3:
                    if packed:
                        for a in range(na):
                            _keep3(best, a, abs(zrow[t, idx[a]] - zsa[a]), dx)
                    else:
                        for a in range(na):
                            _keep3(best, a, abs(zrow[t, a] - zsa[a]), dx)
                else:
                    for a in range(na):
                        c = abs(zrow[t, idx[a]] - zsa[a])
                        dj = c if c > dx else dx
                        for q in range(k - 1, 0, -1):
                            c = best[q - 1, a]
                            c = c if c > dj else dj
                            e = best[q, a]
                            best[q, a] = e if e < c else c
                        e = best[0, a]
                        best[0, a] = e if e < dj else dj
                if steps >= k and ((steps & 3) == 0 or steps == k):
                    # targets whose k-th best is within the current x-distance are done
                    settled = 0
                    for a in range(na):
                        settled += best[k - 1, a] <= dx
                    if RETIRE * settled < na:
                        continue
                    w = 0
                    for a in range(na):
                        e = best[k - 1, a]
                        if e <= dx or (not packed and not no_drop and drop[idx[a], s] != 0):
                            done[idx[a]] = e
                        else:
                            for q in range(k):
                                best[q, w] = best[q, a]
                            zsa[w] = zsa[a]
                            idx[w] = idx[a]
                            w += 1
                    na = w
                    packed = True
            for a in range(na):  # still searching when every sample was visited
                done[idx[a]] = best[k - 1, a]
            # nx: lower bounds in the ascending x-distances visited, all targets' searches level by level
            for j in range(n_t):
                base[j] = 0
            size = steps
            while size > 1:
                half = size // 2
                for j in range(n_t):
                    b = base[j]
                    base[j] = b + half if visited[b + half - 1] < done[j] else b
                size -= half
            for j in range(n_t):
                e = done[j]
                m = base[j]
                m += size == 1 and visited[m] < e
                if direct:  # both counts here: the other one in the target's own sorted row
                    acc_out[f, j] += psi[m + 1] + psi[_strip(zsrt, j, zrank[j, s], zrow[s, j], e) + 1]
                else:
                    eps_out[f, j, s] = e
                    nx_out[f, j, s] = m


@njit(cache=True)
def _count_near(near, m, e):  # noqa: ANN001
    c = 0
    for q in range(m):
        c += near[q] < e
    return c


@njit(parallel=True, cache=True)
def ksg_finish(eps, nx, zsrt, zord, psi, use, acc_out):  # noqa: ANN001 - numba kernel
    """Digamma sums from the joint radii: count ``|z_j - z_j[s]| < eps`` per pair.

    ``eps``, ``nx``: ``(F, T, N)`` from :func:`ksg_eps`; ``zsrt``, ``zord``:
    each target row sorted and its argsort. Adds ``psi[nx + 1] + psi[ny + 1]``
    over the samples ``s`` with ``use[j, s]`` (uint8 (T, N); no rows: all) to
    ``acc_out[f, j]``. For each target and sample, the distances to the
    samples nearer than the largest radius over the features are collected
    once (walking outwards in the sorted order), then counted against every
    feature's radius.
    """
    n_f, n_t, n = eps.shape
    masked = use.shape[0] > 0
    for j in prange(n_t):
        acc = np.zeros(n_f, dtype=np.float64)
        near = np.empty(n, dtype=np.float64)
        for p in range(n):
            s = zord[j, p]
            if masked and use[j, s] == 0:
                continue
            v = zsrt[j, p]
            emax = 0.0
            for f in range(n_f):
                e = eps[f, j, s]
                emax = e if e > emax else emax
            m = 0
            lo = p - 1
            while lo >= 0 and v - zsrt[j, lo] < emax:
                near[m] = v - zsrt[j, lo]
                m += 1
                lo -= 1
            hi = p + 1
            while hi < n and zsrt[j, hi] - v < emax:
                near[m] = zsrt[j, hi] - v
                m += 1
                hi += 1
            for f in range(n_f):
                ny = _count_near(near, m, eps[f, j, s])
                acc[f] += psi[nx[f, j, s] + 1] + psi[ny + 1]
        for f in range(n_f):
            acc_out[f, j] += acc[f]


@njit(parallel=True, cache=True)
def ksg_cd(codes, n_codes, z, zord, k, psi, out):  # noqa: ANN001 - numba kernel
    """Ross' estimator of MI between discrete rows of ``codes`` (D, N) and continuous rows of ``z`` (T, N).

    ``codes`` hold labels ``0..n_codes[i]-1``. Mirrors scikit-learn's
    ``_compute_mi_cd``: per label, the k-th neighbour distance (k capped at the
    label's count - 1) within the label; points whose label occurs once are ignored.
    """
    d_feat, n = codes.shape
    n_t = z.shape[0]
    for pair in prange(d_feat * n_t):
        i = pair // n_t
        j = pair - i * n_t
        ci = codes[i]
        zj, zo = z[j], zord[j]
        n_c = n_codes[i]
        counts = np.zeros(n_c, dtype=np.int64)
        for s in range(n):
            counts[ci[s]] += 1
        start = np.zeros(n_c + 1, dtype=np.int64)
        for c in range(n_c):
            start[c + 1] = start[c] + counts[c]
        fill = start[:n_c].copy()
        within = np.empty(n, dtype=np.float64)  # z sorted inside each label, labels one after another
        masked = np.empty(n, dtype=np.float64)  # z sorted over points whose label occurs more than once
        mpos = np.empty(n, dtype=np.int64)  # position of each sample in `masked`
        n_m = 0
        for q in range(n):
            t = zo[q]
            c = ci[t]
            within[fill[c]] = zj[t]
            fill[c] += 1
            if counts[c] > 1:
                masked[n_m] = zj[t]
                mpos[t] = n_m
                n_m += 1
        if n_m == 0:
            out[i, j] = 0.0
            continue
        acc = 0.0
        fill[:] = start[:n_c]
        for q in range(n):
            t = zo[q]
            c = ci[t]
            p = fill[c]
            fill[c] += 1
            cnt = counts[c]
            if cnt < 2:
                continue
            kk = min(k, cnt - 1)
            a, b = start[c], start[c + 1]
            v = within[p]
            lo, hi = p - 1, p + 1
            r = 0.0
            for _ in range(kk):
                dl = v - within[lo] if lo >= a else np.inf
                dr = within[hi] - v if hi < b else np.inf
                if dl <= dr:
                    r = dl
                    lo -= 1
                else:
                    r = dr
                    hi += 1
            m = _count_within(masked[:n_m], mpos[t], v, r)
            acc += psi[kk] - psi[cnt] - psi[m]
        out[i, j] = max(0.0, psi[n_m] + acc / n_m)
