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


@njit(cache=True)
def _distances(d, zt, zs, dx):  # noqa: ANN001
    """``d[j] = max(dx, |zt[j] - zs[j]|)`` (written with selects so that it vectorises)."""
    for j in range(d.shape[0]):
        a = abs(zt[j] - zs[j])
        d[j] = a if a > dx else dx


@njit(cache=True)
def _insert_row(bq, bp, d):  # noqa: ANN001
    """One rank of the branch-free insertion: ``bq = min(bq, max(bp, d))``."""
    for j in range(d.shape[0]):
        m = bp[j]
        dj = d[j]
        m = m if m > dj else dj
        b = bq[j]
        bq[j] = b if b < m else m


@njit(cache=True)
def _insert_first(b0, d):  # noqa: ANN001
    for j in range(d.shape[0]):
        b = b0[j]
        dj = d[j]
        b0[j] = b if b < dj else dj


@njit(cache=True)
def _insert3(b0, b1, b2, zt, zs, dx):  # noqa: ANN001
    """Distances and insertion fused for the default k = 3 (one pass, vectorised)."""
    for j in range(b0.shape[0]):
        a = abs(zt[j] - zs[j])
        dj = a if a > dx else dx
        x0 = b0[j]
        x1 = b1[j]
        x2 = b2[j]
        m1 = x1 if x1 > dj else dj
        b2[j] = x2 if x2 < m1 else m1
        m0 = x0 if x0 > dj else dj
        b1[j] = x1 if x1 < m0 else m0
        b0[j] = x0 if x0 < dj else dj


@njit(cache=True)
def _row_max(a):  # noqa: ANN001
    m = a[0]
    for j in range(1, a.shape[0]):
        v = a[j]
        m = v if v > m else m
    return m


@njit(cache=True)
def _count_below(cnt, visited, steps, bk):  # noqa: ANN001
    """``cnt[j] = #{q < steps: visited[q] < bk[j]}``."""
    for j in range(cnt.shape[0]):
        e = bk[j]
        c = 0
        for q in range(steps):
            c += visited[q] < e
        cnt[j] = c


@njit(cache=True)
def _lower_bound(a, n, v):  # noqa: ANN001
    """Number of entries of the ascending ``a[:n]`` below ``v`` (branch-free binary search)."""
    base = 0
    size = n
    while size > 1:
        half = size // 2
        base = base + half if a[base + half - 1] < v else base
        size -= half
    if size == 1 and a[base] < v:
        base += 1
    return base


@njit(parallel=True, cache=True)
def ksg_eps(x, xsrt, xord, xrank, zrow, k, eps_out, nx_out):  # noqa: ANN001 - numba kernel
    """Joint k-th neighbour distances for every feature row of ``x`` (F, N) and every target.

    ``zrow`` is the targets as ``(N, T)`` (row-major, one sample per row).
    Writes ``eps_out[f, j, s]`` (the max-norm distance from sample ``s`` to its
    k-th neighbour in the (x_f, z_j) plane) and ``nx_out[f, j, s]`` (how many
    other samples have ``|x_f - x_f[s]| < eps``).

    For each feature and sample, the other samples are visited once, by
    increasing ``|x_f - x_f[s]|``, and the k best distances of every target
    still searching are updated together. A target is done once its k-th best
    is no larger than the current x-distance (no unvisited sample can be
    closer); the sweep ends when all are. While most targets search, the
    update runs over all of them (a branch-free insertion that vectorises);
    once fewer than half do, it runs over the list of those still searching.
    """
    n_f, n = x.shape
    n_t = zrow.shape[1]
    for f in prange(n_f):
        xf, xs_, xo, xr = x[f], xsrt[f], xord[f], xrank[f]
        best = np.empty((k, n_t), dtype=np.float64)
        d = np.empty(n_t, dtype=np.float64)
        active = np.empty(n_t, dtype=np.int64)
        visited = np.empty(n, dtype=np.float64)
        for s in range(n):
            vx = xf[s]
            px = xr[s]
            zs = zrow[s]
            best[:, :] = np.inf
            n_act = n_t
            dense = True
            lo, hi = px - 1, px + 1
            umax = np.inf
            steps = 0
            while True:
                dl = vx - xs_[lo] if lo >= 0 else np.inf
                dr = xs_[hi] - vx if hi < n else np.inf
                if dl <= dr:
                    if dl >= umax:
                        break
                    t = xo[lo]
                    lo -= 1
                    dx = dl
                else:
                    if dr >= umax:
                        break
                    t = xo[hi]
                    hi += 1
                    dx = dr
                visited[steps] = dx
                steps += 1
                zt = zrow[t]
                if dense:
                    if k == 3:
                        _insert3(best[0], best[1], best[2], zt, zs, dx)
                    else:
                        _distances(d, zt, zs, dx)
                        for q in range(k - 1, 0, -1):
                            _insert_row(best[q], best[q - 1], d)
                        _insert_first(best[0], d)
                else:
                    for a in range(n_act):
                        j = active[a]
                        dj = abs(zt[j] - zs[j])
                        dj = dj if dj > dx else dx
                        for q in range(k - 1, 0, -1):
                            m = best[q - 1, j]
                            m = m if m > dj else dj
                            b = best[q, j]
                            best[q, j] = b if b < m else m
                        b = best[0, j]
                        best[0, j] = b if b < dj else dj
                if steps >= k and ((steps & 7) == 0 or steps == k):
                    # targets whose k-th best is within the current x-distance are done
                    um = 0.0
                    na = 0
                    if dense:
                        bk = best[k - 1]
                        for j in range(n_t):
                            b = bk[j]
                            na += b > dx
                            um = b if b > um else um
                        if 2 * na < n_t:
                            dense = False
                            na = 0
                            for j in range(n_t):
                                if bk[j] > dx:
                                    active[na] = j
                                    na += 1
                    else:
                        for a in range(n_act):
                            j = active[a]
                            b = best[k - 1, j]
                            if b > dx:
                                active[na] = j
                                na += 1
                                um = b if b > um else um
                    n_act = na
                    umax = um if na > 0 else dx
            bk = best[k - 1]
            for j in range(n_t):
                eps_out[f, j, s] = bk[j]
                nx_out[f, j, s] = _lower_bound(visited, steps, bk[j])


@njit(cache=True)
def _count_near(near, m, e):  # noqa: ANN001
    c = 0
    for q in range(m):
        c += near[q] < e
    return c


@njit(parallel=True, cache=True)
def ksg_finish(eps, nx, zsrt, zord, k, psi, out):  # noqa: ANN001 - numba kernel
    """MI from the joint radii: count ``|z_j - z_j[s]| < eps`` per pair and average the digammas.

    ``eps``, ``nx``: ``(F, T, N)`` from :func:`ksg_eps`; ``zsrt``, ``zord``:
    each target row sorted and its argsort. Writes ``out[f, j]`` (clamped at
    0). For each target and sample, the distances to the samples nearer than
    the largest radius over the features are collected once (walking outwards
    in the sorted order), then counted against every feature's radius.
    """
    n_f, n_t, n = eps.shape
    base = psi[n] + psi[k]
    for j in prange(n_t):
        zs_, zo = zsrt[j], zord[j]
        acc = np.zeros(n_f, dtype=np.float64)
        near = np.empty(n, dtype=np.float64)
        for p in range(n):
            s = zo[p]
            v = zs_[p]
            emax = 0.0
            for f in range(n_f):
                e = eps[f, j, s]
                emax = e if e > emax else emax
            m = 0
            lo = p - 1
            while lo >= 0 and v - zs_[lo] < emax:
                near[m] = v - zs_[lo]
                m += 1
                lo -= 1
            hi = p + 1
            while hi < n and zs_[hi] - v < emax:
                near[m] = zs_[hi] - v
                m += 1
                hi += 1
            for f in range(n_f):
                ny = _count_near(near, m, eps[f, j, s])
                acc[f] += psi[nx[f, j, s] + 1] + psi[ny + 1]
        for f in range(n_f):
            out[f, j] = max(0.0, base - acc[f] / n)


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
