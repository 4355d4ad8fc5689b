"""The latent-size law: held-out reconstruction error as a formula of the latent size.

:func:`latent_size_law` trains an autoencoder at several latent sizes on the
fit split, records each model's mean squared reconstruction error on the
held-out explain split, and fits ``error = f(latent_size)`` on **log error**
(:mod:`.lawfit`: power law with plateau, exponential with plateau, power law,
and a symbolic formula for ``log(error)`` from the same backends as the
``symbolic_regression`` explainer), judged by leave-one-size-out.

Which autoencoder
    The built-in architecture for the data's kind (or ``architecture``), or the
    user's own: ``factory="package.module:Class"`` is called with ``kwargs``
    plus the latent size under the keyword ``latent_kwarg`` (default
    ``latent_dim``), and must return a ``torch.nn.Module`` with
    ``encode``/``decode`` (or ``encoder``/``decoder``; names via ``encoder`` /
    ``decoder``). The factory is resolved by :func:`aeinterp.models.loading.import_factory`,
    as a recipe's ``model.factory`` is, so its module must be importable.

How it is trained
    ``trainer=None`` (the built-in trainer): the built-in architectures train
    with their own loss (reconstruction, plus KL for VAEs); a user's module
    trains on the mean squared error of ``decode(encode(x))`` (the code as the
    adapter selects it, e.g. the mean of a VAE), with Adam. Or a callable
    (``"package.module:fn"`` or the function itself), called as
    ``fn(module, x_fit, epochs=..., lr=..., batch_size=..., seed=...)``; it
    trains ``module`` in place (its return value is ignored).

Usage from Python::

    from aeinterp.io.datasets import load_dataset
    from aeinterp_symbolic.law import latent_size_law

    law = latent_size_law(load_dataset(builtin="breast_cancer"), sizes=[2, 4, 8, 16],
                          train={"epochs": 60}, params={"generations": 50})
    print(law.formula, law.loso_ratio, law.warnings)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from aeinterp.data import ArrayDataset
from aeinterp.errors import DataError, ModelError, require
from aeinterp.explanation import jsonable
from aeinterp.model import TorchAutoencoder, evaluate
from aeinterp.models.architectures import DEFAULT_FOR_KIND
from aeinterp.models.loading import build_builtin, import_factory
from aeinterp.models.training import TrainConfig, train_autoencoder
from aeinterp.progress import NullProgress, Progress

from .backends import SearchSettings, make_backend
from .explainer import SymbolicRegression, available_cpus
from .lawfit import fit_law

__all__ = ["LatentSizeLaw", "latent_size_law", "LAW_OPERATORS", "train_size"]

LAW_OPERATORS = ["add", "sub", "mul", "div", "exp", "log", "sqrt"]


@dataclass(frozen=True)
class LatentSizeLaw:
    """Held-out reconstruction error per latent size and the law fitted to it (on log error)."""

    sizes: list[int]
    errors: list[float]
    train_losses: list[float]
    formula: str
    latex: str
    r2_in_sample: float  # on log error
    rmse_in_sample: float  # of log error
    r2_displayed: float  # on the raw scale, for comparison only
    backend: str
    architecture: str
    pareto_front: list[dict[str, Any]] = field(default_factory=list)
    family: str = ""
    plateau: float | None = None
    plateau_above: list[int] = field(default_factory=list)
    fitted: list[float] = field(default_factory=list)
    fit_ratio: list[float] = field(default_factory=list)
    loso_ratio: list[float | None] = field(default_factory=list)
    loso_rms_log: float = math.nan
    warnings: list[str] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    trainer: str = "builtin"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for ``results.json`` or a report)."""
        return jsonable(asdict(self))

    def lines(self) -> list[str]:
        """Human-readable lines: one per size (measured, fitted, left-out prediction), then the law and its warnings."""
        rows = []
        for k, e, fr, lr in zip(self.sizes, self.errors, self.fit_ratio, self.loso_ratio):
            left = f"{lr:.2f}x" if lr is not None else "n/a"
            rows.append(f"latent size {k:>3}: held-out MSE {e:.4g}   law/measured {fr:.2f}x, left out {left}")
        plateau = f", plateau {self.plateau:.4g}" if self.plateau is not None else ""
        rows.append(
            f"error = {self.formula}   ({self.family}, fitted on log error: R^2 {self.r2_in_sample:.3f}; "
            f"leave-one-size-out RMS log ratio {self.loso_rms_log:.3f}{plateau}; {self.backend})"
        )
        return rows + [f"warning: {w}" for w in self.warnings]


def _resolve_trainer(trainer: str | Callable[..., Any] | None) -> tuple[Callable[..., Any] | None, str]:
    if trainer is None or trainer == "builtin":
        return None, "builtin"
    if callable(trainer):
        return trainer, getattr(trainer, "__qualname__", repr(trainer))
    return import_factory(str(trainer)), str(trainer)


class _Reconstruct(nn.Module):
    """``decode(encode(x))`` of a user's module through the adapter, so the built-in trainer can train it."""

    def __init__(self, module: nn.Module, adapter: TorchAutoencoder) -> None:
        super().__init__()
        self.inner = module
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter.reconstruct(x)


def _held_out_error(adapter: TorchAutoencoder, x: np.ndarray) -> float:
    was = adapter.module.training
    adapter.module.eval()
    try:
        rec = evaluate(adapter.reconstruct, x, model=adapter).double().numpy()
    finally:
        adapter.module.train(was)
    return float(np.mean((rec.reshape(len(x), -1) - np.asarray(x, dtype=np.float64).reshape(len(x), -1)) ** 2))


def train_size(
    data: ArrayDataset,
    size: int,
    *,
    factory: str | Callable[..., nn.Module],
    kwargs: Mapping[str, Any] | None = None,
    latent_kwarg: str = "latent_dim",
    trainer: str | Callable[..., Any] | None = None,
    config: TrainConfig = TrainConfig(),
    encoder: str | None = None,
    decoder: str | None = None,
) -> tuple[float, float]:
    """Build the user's model at latent ``size``, train it on the fit split, return ``(held-out MSE, last train loss)``."""
    build = import_factory(factory) if isinstance(factory, str) else factory
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, caller's RNG untouched
        torch.manual_seed(config.seed)
        try:
            module = build(**{**dict(kwargs or {}), latent_kwarg: int(size)})
        except Exception as exc:  # noqa: BLE001 - a user's factory may raise anything
            raise ModelError(f"factory {factory!r} failed for {latent_kwarg}={size}: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise ModelError(f"factory {factory!r} returned {type(module).__name__}, not a torch.nn.Module")
    adapter = TorchAutoencoder(module, data.sample_shape, encoder=encoder, decoder=decoder)
    fn, _ = _resolve_trainer(trainer)
    loss = math.nan
    if fn is None:
        result = train_autoencoder(_Reconstruct(module, adapter), data.x_fit, config)
        loss = result.train_loss[-1] if result.train_loss else math.nan
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            try:
                fn(module, data.x_fit, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, seed=config.seed)
            except Exception as exc:  # noqa: BLE001 - a user's trainer may raise anything
                raise ModelError(f"trainer {trainer!r} failed for {latent_kwarg}={size}: {type(exc).__name__}: {exc}") from None
    z = adapter.encode(torch.as_tensor(data.x_explain[:2], dtype=adapter.dtype))
    if z.shape[1] != size:
        raise ModelError(f"factory {factory!r} with {latent_kwarg}={size} builds a code of {z.shape[1]} dims, not {size}")
    return _held_out_error(adapter, data.x_explain), float(loss)


def _symbolic_candidate(
    p: SymbolicRegression.Params, seed: int, sizes: Sequence[int], errors: Sequence[float]
) -> tuple[Any, Any, dict[str, Any], str]:
    """``(refit, full, kept, backend name)`` for :func:`fit_law`: a formula for log(error) of the latent size.

    ``kept["fit"]`` holds the search result on all sizes once ``full()`` ran.
    """
    import sympy

    from .formulas import compile_expr, make_symbols
    from .search import Job, fit_target

    backend = make_backend(p.backend, allow_julia_install=p.allow_julia_install)
    symbols = make_symbols(1)
    settings = SearchSettings(
        operators=tuple(p.operators),
        max_size=p.max_size,
        generations=p.generations,
        population_size=p.population_size,
        time_budget=p.time_budget,
        threads=p.threads or available_cpus(),
        seed=p.seed if p.seed is not None else seed,
        optimizer_iterations=p.optimizer_iterations,
    )
    kept: dict[str, Any] = {}

    def search(k: np.ndarray, e: np.ndarray):  # noqa: ANN202
        x = np.asarray(k, dtype=np.float64)[:, None]
        y = np.log(np.asarray(e, dtype=np.float64))
        job = Job(
            index=0,
            columns=np.array([0]),
            x_train=x,
            y_train=y,
            x_val=x,
            y_val=y,
            x_test=x,
            y_test=y,
            settings=settings,
            parsimony=p.parsimony,
            precision=p.precision,
            linear=False,
            grow=False,
        )
        return fit_target(backend, job, symbols, ["latent_size"])

    def predictor(fit):  # noqa: ANN001, ANN202
        g = compile_expr(fit.expr, symbols)
        return lambda k: np.exp(g(np.asarray(k, dtype=np.float64).reshape(-1, 1)))

    def refit(k: np.ndarray, e: np.ndarray):  # noqa: ANN202
        return predictor(search(k, e))

    def full():  # noqa: ANN202
        fit = kept["fit"] = search(np.asarray(sizes), np.asarray(errors))
        plateau = None
        try:
            lim = sympy.limit(fit.expr, symbols[0], sympy.oo)
            plateau = 0.0 if lim == -sympy.oo else (float(sympy.exp(lim)) if lim.is_finite else None)
        except Exception:  # noqa: BLE001 - no limit, no plateau
            plateau = None
        return predictor(fit), f"exp({fit.text})", plateau

    return refit, full, kept, backend.name


def latent_size_law(
    data: ArrayDataset,
    *,
    sizes: Sequence[int] = (2, 4, 8, 16, 32),
    architecture: str | None = None,
    options: Mapping[str, Any] | None = None,
    factory: str | Callable[..., nn.Module] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    latent_kwarg: str = "latent_dim",
    trainer: str | Callable[..., Any] | None = None,
    encoder: str | None = None,
    decoder: str | None = None,
    train: TrainConfig | Mapping[str, Any] | None = None,
    params: SymbolicRegression.Params | Mapping[str, Any] | None = None,
    symbolic: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> LatentSizeLaw:
    """Train an autoencoder at each of ``sizes`` and fit ``error = f(latent_size)`` on log error.

    ``architecture`` / ``options``: a built-in architecture and its options
    (e.g. ``{"hidden": [32]}``); or ``factory`` / ``kwargs`` / ``latent_kwarg``:
    the user's own model (see the module docstring), with ``trainer`` (None
    for the built-in trainer, or ``"package.module:fn"`` / a callable).
    ``train`` a :class:`TrainConfig` or its fields (its seed defaults to ``seed``),
    ``params`` the explainer's params for the symbolic candidate (backend,
    operators, sizes, budget; default operators :data:`LAW_OPERATORS`,
    ``max_size`` 12, ``parsimony`` 0.02); ``symbolic=False`` fits the
    parametric families only.
    """
    require("sympy", "symbolic", "the latent-size law")
    progress = progress or NullProgress()
    sizes = sorted({int(k) for k in sizes})
    if len(sizes) < 3 or sizes[0] < 1:
        raise DataError(f"the latent-size law needs at least 3 distinct positive latent sizes, got {sizes}")
    config = train if isinstance(train, TrainConfig) else TrainConfig(**{"seed": seed, **dict(train or {})})
    if isinstance(params, SymbolicRegression.Params):
        p = params
    else:
        p = SymbolicRegression.Params(**{"operators": LAW_OPERATORS, "max_size": 12, "parsimony": 0.02, **dict(params or {})})
    if factory is not None:
        arch = factory if isinstance(factory, str) else getattr(factory, "__qualname__", repr(factory))
        build = import_factory(factory) if isinstance(factory, str) else factory  # resolved once, checked by loading
    else:
        arch = architecture or DEFAULT_FOR_KIND[data.kind]
        if trainer not in (None, "builtin"):
            raise ModelError("`trainer` trains a user's `factory` model; the built-in architectures use the built-in trainer")
    _, trainer_name = _resolve_trainer(trainer)

    errors, losses = [], []
    for k in progress.track(sizes, total=len(sizes), description="latent-size law: training"):
        if factory is not None:
            err, loss = train_size(
                data,
                k,
                factory=build,
                kwargs=kwargs,
                latent_kwarg=latent_kwarg,
                trainer=trainer,
                config=config,
                encoder=encoder,
                decoder=decoder,
            )
        else:
            _, result = build_builtin(arch, data, latent_dim=k, options=options, train=config)  # seeded initial weights
            err = float(result.val_error)
            loss = float(result.train_loss[-1]) if result.train_loss else float("nan")
        if not (math.isfinite(err) and err > 0):
            raise ModelError(f"latent size {k}: held-out reconstruction error is {err}; a law needs positive, finite errors")
        errors.append(err)
        losses.append(loss)

    backend_name, kept, sym = "none (parametric families only)", {}, None
    if symbolic:
        refit, full, kept, backend_name = _symbolic_candidate(p, seed, sizes, errors)
        sym = (refit, full)
    law = fit_law(sizes, errors, symbolic=sym)
    log_e = np.log(np.asarray(errors))
    rmse_log = float(np.sqrt(np.mean((np.log(np.asarray(law.fitted)) - log_e) ** 2)))
    latex = law.formula
    front: list[dict[str, Any]] = []
    if law.family == "symbolic" and "fit" in kept:
        latex, front = rf"\exp\left({kept['fit'].latex}\right)", kept["fit"].front
    else:
        try:
            import sympy

            latex = sympy.latex(sympy.sympify(law.formula, locals={"latent_size": sympy.Symbol("latent_size")}))
        except Exception:  # noqa: BLE001 - the text is still right
            pass
    return LatentSizeLaw(
        sizes=sizes,
        errors=errors,
        train_losses=losses,
        formula=law.formula,
        latex=latex,
        r2_in_sample=law.r2_log,
        rmse_in_sample=rmse_log,
        r2_displayed=law.r2_raw,
        backend=backend_name,
        architecture=arch,
        pareto_front=front,
        family=law.family,
        plateau=law.plateau,
        plateau_above=law.plateau_above,
        fitted=law.fitted,
        fit_ratio=law.fit_ratio,
        loso_ratio=law.loso_ratio,
        loso_rms_log=law.loso_rms_log,
        warnings=law.warnings,
        candidates=law.candidates,
        trainer=trainer_name,
    )
