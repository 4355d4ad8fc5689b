"""What streamed explainers share: the ``local`` choice, on-disk rows and the anytime stopping rule.

Explainers that reduce over sample chunks (:mod:`aeinterp.toolkit.chunks`) hold only
the running sums of the global importance. What they keep per sample is the
user's choice, the ``local`` param (the same values for every explainer):

``auto`` (the default)
    ``full`` when the per-sample array (samples x targets x groups, float32)
    fits in ``local_max_mb``, else each sample's top ``K`` features (``K`` <= 20,
    as many as fit in ``local_max_mb``; what the beeswarm and waterfall draw),
    else ``none``, with a one-line note in ``extras["local_note"]``;
``none``
    no per-sample output;
``full``
    every per-sample attribution; beyond ``local_max_mb`` it is written chunk
    by chunk to an ``.npy`` file (:class:`RowsSink`) and ``Explanation.local``
    is a read-only memory map of it; the results store moves it next to
    ``results.json`` as ``<alias>.local.npy``;
``top_k:K``
    per sample and target the ``K`` groups of largest absolute attribution:
    ``arrays["local_top_index"]`` (int32) and ``arrays["local_top_value"]``
    (float32), both ``(samples, targets, K)``.

Anytime estimates: ``max_samples: auto`` (or an ``anytime_tolerance``) makes the seam
run the sample chunks in rounds of growing size (:func:`round_sizes`) and stop
after a round where :func:`converged` holds: for every target the largest
half-width of the importance's confidence interval is within ``anytime_tolerance``
of the target's largest importance, and the top-``k`` ranking of every target
is the one of the round before, up to ties within the intervals: two features
may trade places only when their current values are closer than the sum of
their half-widths (a strict order between near-equal importances is noise no
sample count settles; on 10**6 x 200 data permutation's top-5 of 16 latents
kept swapping such pairs and never stopped).
"""

from __future__ import annotations

import atexit
import contextlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, field_validator

from ..data import subsample_indices
from ..explainer import ExplainerParams
from ..resources import check_free, reserve

__all__ = [
    "StreamParams",
    "MaxSamples",
    "LocalPlan",
    "local_plan",
    "parse_local",
    "RowsSink",
    "top_k_rows",
    "round_sizes",
    "converged",
    "same_ranking",
    "Z_95",
]

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile
_TOP_K = re.compile(r"^top_k:(\d+)$")


def parse_local(value: str) -> tuple[str, int | None]:
    """``"top_k:5"`` -> ``("top_k", 5)``; ``auto``/``none``/``full`` -> ``(value, None)``."""
    if value in ("auto", "none", "full"):
        return value, None
    m = _TOP_K.match(value)
    if m is None or int(m.group(1)) < 1:
        raise ValueError(f"local must be auto, none, full or top_k:K with K >= 1, not {value!r}")
    return "top_k", int(m.group(1))


def _at_least_one(value: int | str | None) -> int | str | None:
    if isinstance(value, int) and value < 1:
        raise ValueError("max_samples must be >= 1")
    return value


#: ``max_samples`` of a streamed explainer: a count >= 1, ``auto`` (anytime rounds, see above) or None (every sample)
MaxSamples = Annotated[int | Literal["auto"] | None, AfterValidator(_at_least_one)]


class StreamParams(ExplainerParams):
    """Params every streamed explainer shares (mix into its ``Params``)."""

    local: str = Field(
        "auto",
        description="per-sample output: auto (full if it fits in local_max_mb, else each sample's top 20 features or as many as fit, else none), none, full (on disk beyond local_max_mb) or top_k:K",
    )
    local_max_mb: float = Field(
        64.0,
        gt=0,
        description="largest per-sample array kept in memory, in MiB (auto keeps each sample's top features above it, full writes it to disk)",
    )
    chunk_size: int | None = Field(
        None, ge=1, description="samples per chunk handed to the executor (default: the explainer's choice from its memory bound)"
    )
    anytime_tolerance: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="anytime: stop drawing sample rounds once every target's 95 % interval half-width is within this share of its largest importance and the top-k ranking is stable (max_samples: auto uses 0.05)",
    )
    stable_top_k: int = Field(5, ge=1, description="anytime: how many top features per target must keep their order between two rounds")
    first_round: int = Field(128, ge=2, description="anytime: samples in the first round (each next round doubles the total)")

    @field_validator("local")
    @classmethod
    def _check_local(cls, value: str) -> str:
        parse_local(value)
        return value


def sample_index(explainer: Any, total: int, max_samples: int | str | None, rng: np.random.Generator, split: str) -> np.ndarray:
    """The samples of a ``split`` of ``total`` rows that a streamed step uses.

    ``max_samples: auto``: all of them in a random order (anytime rounds take a
    prefix, so which rows were used is known only at the end); otherwise a
    seeded subset (all rows if None), recorded in ``explainer.rows_used`` so the
    step's npz says which rows of the split it used.

    It takes exactly one draw from ``rng`` whatever ``max_samples`` is, so what
    the caller draws next (a background, baselines, donors) is the same for
    every ``max_samples``: an anytime estimate and the full-data result differ
    only in the samples averaged, never in the background they use.
    """
    own = np.random.default_rng(int(rng.integers(2**63)))
    if max_samples == "auto":
        return own.permutation(total)
    index = subsample_indices(total, max_samples, own)  # type: ignore[arg-type]
    explainer.rows_used[split] = index
    return index


AUTO_TOP_K = 20  # local: auto keeps at most this many features per sample and target when the full array is over budget


class LocalPlan:
    """Where the per-sample rows of one step go: ``mode`` is ``none``, ``memory``, ``disk`` or ``top_k``."""

    def __init__(self, mode: str, k: int | None = None, note: str | None = None) -> None:
        self.mode, self.k, self.note = mode, k, note

    @property
    def rows(self) -> bool:
        return self.mode != "none"

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"local": self.mode if self.mode != "top_k" else f"top_k:{self.k}"}
        if self.note:
            out["local_note"] = self.note
        return out


def local_plan(requested: str, n_samples: int, n_targets: int, n_groups: int, max_mb: float) -> LocalPlan:
    """The :class:`LocalPlan` for a ``(n_samples, n_targets, n_groups)`` float32 array and the ``local`` param."""
    mode, k = parse_local(requested)
    mb = n_samples * n_targets * n_groups * 4 / 2**20
    if mode == "none":
        return LocalPlan("none")
    if mode == "top_k":
        return LocalPlan("top_k", min(k or 1, n_groups))
    if mb <= max_mb:
        return LocalPlan("memory")
    if mode == "full":
        return LocalPlan("disk", note=f"per-sample attributions ({mb:.0f} MiB > local_max_mb) written to disk and read lazily")
    fit = int(max_mb * 2**20 // max(1, n_samples * n_targets * 8))  # int32 index + float32 value per kept entry
    k = min(AUTO_TOP_K, n_groups, fit)
    if k >= 1:  # what the beeswarm and waterfall draw: each sample's largest attributions, within the bound
        return LocalPlan(
            "top_k",
            k,
            note=f"per-sample attributions ({mb:.0f} MiB > local_max_mb = {max_mb:g}) kept for each sample's top {k} features only (arrays local_top_index / local_top_value; local: full writes them all to disk)",
        )
    return LocalPlan(
        "none",
        note=f"per-sample attributions not kept: {mb:.0f} MiB > local_max_mb = {max_mb:g} (set local: full to write them to disk, or top_k:K)",
    )


def top_k_rows(values: Any, k: int, *, magnitude: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(index, value)`` of the ``k`` largest ``|values|`` along the last axis, largest first.

    ``values``: a numpy array or a torch tensor (a chunk stays in torch, no host copy of the whole chunk). Long rows
    take two exact stages: the rows are cut into blocks of :data:`TOPK_BLOCK`, the ``k`` blocks with the largest
    maxima hold the ``k`` largest values (any other block's largest value is below ``k`` block maxima), and only their
    ``k * TOPK_BLOCK`` candidates are ranked, instead of a partial sort of every row (1.6x faster at 1,000 features).
    ``magnitude``: ``|values|`` as a tensor when the caller has it already. Magnitudes are ranked as the integers
    their bits spell (exact for non-negative floats; 1.25x faster than ranking the floats at 200 features).
    """
    import torch

    t = values.detach() if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
    n = t.shape[-1]
    k = min(int(k), n)
    mag = t.abs() if magnitude is None else magnitude
    ints = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16, torch.bfloat16: torch.int16}
    if mag.dtype in ints:  # a non-negative float's bits, read as an integer, order as the float does: integer ranking is faster
        mag = mag.view(ints[mag.dtype])
    if n >= 4 * k * TOPK_BLOCK and k >= 1:
        blocks = -(-n // TOPK_BLOCK)
        padded = (
            mag if n % TOPK_BLOCK == 0 else torch.nn.functional.pad(mag, (0, blocks * TOPK_BLOCK - n), value=-1)
        )  # -1: below every |value| (as a float, and as a non-negative float's bits)
        top_blocks = padded.unflatten(-1, (blocks, TOPK_BLOCK)).amax(-1).topk(k, dim=-1, sorted=False).indices
        cand = (top_blocks.unsqueeze(-1) * TOPK_BLOCK + torch.arange(TOPK_BLOCK, device=t.device)).flatten(-2)
        best = padded.gather(-1, cand).topk(k, dim=-1, largest=True, sorted=True).indices
        index = cand.gather(-1, best)
    else:
        index = mag.topk(k, dim=-1, largest=True, sorted=True).indices
    value = t.gather(-1, index)
    return index.to(torch.int32).cpu().numpy(), value.to(torch.float32).cpu().numpy()


#: the block length of :func:`top_k_rows`' first stage
TOPK_BLOCK = 8


class RowsSink:
    """Rows of one key written chunk by chunk into an ``.npy`` file (a memory map; nothing held in RAM).

    ``write(key, start, rows)`` puts ``rows`` at unit offset ``start`` of the
    ``(total, *rows.shape[1:])`` array ``<dir>/<key>.npy``; ``arrays()``
    returns each file opened read-only with ``mmap_mode="r"``.
    """

    def __init__(self, total: int, directory: str | Path | None = None) -> None:
        self.total = int(total)
        if directory is None:  # the Python API: a temporary folder, removed at exit at the latest
            self.dir = Path(tempfile.mkdtemp(prefix="aeinterp-rows-"))
            _TEMPORARY.add(str(self.dir))
        else:
            self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._maps: dict[str, np.memmap] = {}

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npy"

    def write(self, key: str, start: int, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        if key not in self._maps:
            self._maps[key] = self._open(key, rows.dtype, (self.total, *rows.shape[1:]))
        self._maps[key][start : start + rows.shape[0]] = rows

    def _open(self, key: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.memmap:
        """The ``.npy`` map for ``key``, its blocks reserved on disk first: a full disk fails here, not as SIGBUS on a later write."""
        what = f"spilling {key} ({' x '.join(map(str, shape))} {np.dtype(dtype).name})"
        check_free(self.dir, int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize, what)
        out = np.lib.format.open_memmap(self.path(key), mode="w+", dtype=dtype, shape=shape)
        try:
            reserve(self.path(key), what)
        except BaseException:
            del out
            raise
        return out

    def discard(self) -> None:
        """Remove what was written (a failed step): its files, and the folder when it is empty."""
        self._maps.clear()
        for key_file in self.dir.glob("*.npy"):
            key_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.dir.rmdir()

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for key, mm in self._maps.items():
            mm.flush()
            out[key] = np.load(self.path(key), mmap_mode="r")
        self._maps.clear()
        return out


_TEMPORARY: set[str] = set()  # aeinterp-rows-* folders of this process (the Python API spills there)


@atexit.register
def _remove_temporary() -> None:
    """Remove this process's temporary rows folders at exit (results saved with ``save`` were copied or moved out)."""
    for folder in list(_TEMPORARY):
        shutil.rmtree(folder, ignore_errors=True)
    _TEMPORARY.clear()


def round_sizes(total: int, first: int) -> list[int]:
    """Cumulative sample counts of the anytime rounds: ``first``, then doubling, ending at ``total``."""
    sizes, n = [], max(2, int(first))
    while n < total:
        sizes.append(n)
        n *= 2
    sizes.append(total)
    return sizes


def converged(value: np.ndarray, halfwidth: np.ndarray, previous: np.ndarray | None, tolerance: float, top_k: int) -> tuple[bool, float]:
    """The anytime stopping rule and the largest relative half-width (see the module docstring)."""
    scale = np.abs(value).max(axis=1, keepdims=True)
    rel = np.divide(halfwidth, scale, out=np.zeros_like(halfwidth, dtype=np.float64), where=scale > 0)
    worst = float(rel.max(initial=0.0))
    if previous is None:
        return False, worst
    return bool(worst <= tolerance and same_ranking(value, halfwidth, previous, top_k)), worst


def same_ranking(value: np.ndarray, halfwidth: np.ndarray, other: np.ndarray, top_k: int) -> bool:
    """Whether every target's top-``top_k`` order in ``value`` is the one in ``other``, up to ties within the intervals.

    A pair of features (among either top-k) ordered one way in ``value`` and the
    other way in ``other`` is a tie when ``|value_i - value_j| <= halfwidth_i + halfwidth_j``.
    """
    k = min(top_k, value.shape[1])
    for v, h, o in zip(value, halfwidth, other):
        now, before = np.argsort(-v, kind="stable"), np.argsort(-o, kind="stable")
        if np.array_equal(now[:k], before[:k]):
            continue
        cand = np.union1d(now[:k], before[:k])
        rank_now, rank_before = np.empty_like(now), np.empty_like(before)
        rank_now[now], rank_before[before] = np.arange(len(now)), np.arange(len(before))
        swapped = (
            np.sign(rank_now[cand][:, None] - rank_now[cand][None, :]) * np.sign(rank_before[cand][:, None] - rank_before[cand][None, :])
        ) < 0
        apart = np.abs(v[cand][:, None] - v[cand][None, :]) > h[cand][:, None] + h[cand][None, :]
        if np.any(swapped & apart):
            return False
    return True
