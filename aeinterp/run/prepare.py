"""Before the steps: a recipe's data read and split, its cache opened, its model loaded or trained.

Everything here can fail on bad input; each failure is an
:class:`aeinterp.errors.AeinterpError` that says what to fix (a damaged data
file, a model file that is not what its recipe says).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..data import ArrayDataset
from ..device import device_name, resolve_device
from ..errors import AeinterpError, DataError, RecipeError
from ..io.datasets import load_dataset
from ..model import TorchAutoencoder
from ..models.loading import adapt, build_builtin, load_module
from ..models.training import TrainConfig
from ..progress import NullProgress
from ..recipe.schema import LoadedRecipe, resolve
from .cache import Cache, data_fingerprint

__all__ = ["load_data", "resolve_cache", "load_model"]


def load_data(loaded: LoadedRecipe) -> ArrayDataset:
    """The recipe's data, read and split (a reader tripping over a damaged file is a :class:`DataError`)."""
    d = loaded.recipe.data
    base = loaded.base_dir
    path = resolve(base, d.path)
    if path is not None and path.is_dir() and path.suffix != ".zarr":  # an AnnData .zarr store is a folder
        raise DataError(f"data.path {path} is a folder; give a data file (.csv, .npy, .npz, .parquet or .h5ad) or an AnnData .zarr store")
    try:
        return load_dataset(
            path=path,
            builtin=d.builtin,
            kind=d.kind,
            feature_names=d.feature_names,
            label=d.label,
            factors=d.factors,
            key=d.key if d.layer is None else d.layer,
            groups=d.groups,
            explain_fraction=d.split.explain_fraction,
            explain_size=d.split.explain_size,
            split_seed=d.split.seed,
            standardize=d.standardize,
            nan=d.nan,
            max_samples=d.max_samples,
            encoding=d.encoding,
            index=d.index,
            fit_path=resolve(base, d.fit_path),
            explain_path=resolve(base, d.explain_path),
            split_column=d.split.column,
            explain_values=d.split.values("explain") or ("test",),
            fit_values=d.split.values("fit"),
            explain_rows=d.split.explain_rows,
            fit_rows=d.split.fit_rows,
            base_dir=base,
        )
    except (AeinterpError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # a reader tripping over a damaged file is still bad input
        where = path if path is not None else f"builtin {d.builtin}"
        raise DataError(
            f"cannot read the data {where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (is the file complete and of the format its name says?)"
        ) from None


def resolve_cache(loaded: LoadedRecipe, override: bool | str | Path | None = None) -> Cache | None:
    """The cache a run uses (``override``, the Runner's ``cache``, over the recipe's ``cache:``), or None."""
    setting = override if override is not None else loaded.recipe.cache
    if setting is False:
        return None
    if setting is True:
        return Cache()
    return Cache(resolve(loaded.base_dir, str(setting)))


def _trained_line(architecture: str, training: Mapping[str, Any]) -> str:
    """``model: builtin mlp trained 30 epochs, final train loss 0.0123, held-out error 0.0150``."""
    loss, val = training.get("final_train_loss"), training.get("val_error")
    parts = [f"model: builtin {architecture} trained {training.get('epochs')} epochs"]
    if isinstance(loss, (int, float)):
        parts.append(f"final train loss {loss:.4g}")
    if isinstance(val, (int, float)):
        parts.append(f"held-out error {val:.4g}")
    return ", ".join(parts)


def load_model(
    loaded: LoadedRecipe,
    data: ArrayDataset,
    out_dir: Path,
    *,
    device: Any = None,
    cache: Cache | None = None,
    data_hash: str | None = None,
    say: Callable[[str], None] = print,
    progress: Callable[[str], Any] = lambda prefix: NullProgress(),
    trusted_factories: tuple[str, ...] = (),
) -> tuple[TorchAutoencoder, dict[str, Any]]:
    """The recipe's model, adapted to the Model protocol, and what the results say of it.

    A built-in architecture is trained (or taken from ``cache``) and saved
    where ``model.save`` says; a file is loaded (``weights_only`` unless
    trusted). ``say`` prints one line; ``progress(prefix)`` makes a progress bar.
    """
    m = loaded.recipe.model
    device = resolve_device(device if device is not None else loaded.recipe.device)
    info: dict[str, Any] = {"device": device_name(device)}
    if m.builtin is not None:
        key = None
        hit = None
        if cache is not None:
            section = m.model_dump(mode="json", include={"builtin", "latent_dim", "options", "train"})
            key = cache.model_key(section, seed=loaded.recipe.seed, data_hash=data_hash or data_fingerprint(data), device=device.type)
            hit = cache.load_model(key, device)
        if hit is not None:
            module, training = hit
            info.update(source=f"builtin:{getattr(module, 'architecture', m.builtin)}", training=training, cached=True)
            say(
                f"model: builtin {getattr(module, 'architecture', m.builtin)} from the cache (cached; trained {training.get('epochs')} epochs earlier)"
            )
        else:
            bar = progress("model: ")
            with bar:
                module, trained = build_builtin(
                    m.builtin,
                    data,
                    latent_dim=int(m.latent_dim or 0),
                    options=m.options,
                    train=TrainConfig(**m.train.model_dump(), seed=loaded.recipe.seed),
                    progress=bar,
                    device=device,
                )
            info.update(source=f"builtin:{getattr(module, 'architecture', m.builtin)}", training=trained.to_json())
            say(_trained_line(getattr(module, "architecture", m.builtin), trained.to_json()))
            if cache is not None and key is not None:
                cache.save_model(key, module, trained.to_json())
        if m.save:
            import torch

            target = resolve(out_dir, m.save)
            if target is None or not target.is_relative_to(out_dir.resolve()):
                raise RecipeError(f"model.save {m.save!r} points outside the output folder {out_dir}")
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.save(module.checkpoint(), target)
            info["saved"] = str(target)
    else:
        path = resolve(loaded.base_dir, m.path)
        assert path is not None  # the recipe schema guarantees path or builtin
        module = load_module(
            path,
            format=m.format,
            factory=m.factory,
            kwargs=m.kwargs,
            trust=m.trust,
            base_dir=loaded.base_dir,
            device=device,
            trusted_factories=trusted_factories,
        )
        info["source"] = str(path)
    model = adapt(
        module,
        data,
        encoder=m.encoder,
        decoder=m.decoder,
        code=m.code,
        head=m.head,
        task_dims=m.task_dims,
        description=type(module).__name__,
        device=device,
        base_dir=loaded.base_dir,
        trusted_factories=trusted_factories,
    )
    info.update(description=model.description, latent_dim=model.latent_dim, input_shape=list(model.input_shape))
    if model.task_dims is not None:
        info.update(task_dims=model.task_dims, class_names=model.class_names)
    return model, info
