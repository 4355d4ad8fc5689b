"""Loading a model from a recipe: TorchScript, checkpoint, state dict + factory, or a trained built-in.

``torch.load`` runs with ``weights_only=True`` unless the recipe says
``trust: true``; ``.safetensors`` files are read without pickle at all. A
factory is named by an import path (``package.module:Name``), never by code in
the recipe; the recipe's folder is importable while loading. Weights are found
in a plain state dict or in a training checkpoint (``model_state_dict``,
``state_dict``, ``model``, ... with a wrapper's ``model.`` / ``module.``
prefix removed when that makes the keys fit).
A factory is only called when it is a ``torch.nn.Module`` subclass, a function
marked with :func:`factory`, or a name the caller trusts (``trusted_factories``,
``--trust-factory``); standard-library and builtin callables are never called.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import zipfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import ArrayDataset
from ..device import map_location, resolve_device
from ..errors import ModelError
from ..model import TorchAutoencoder, as_tensor, frozen
from ..progress import Progress
from ..toolkit.checks import check_model_memory
from .architectures import ARCHITECTURES, CHECKPOINT_FORMAT, DEFAULT_FOR_KIND, build_architecture, from_checkpoint
from .training import TrainConfig, TrainResult, train_autoencoder

__all__ = [
    "load_module",
    "import_factory",
    "resolve_factory",
    "factory",
    "build_builtin",
    "adapt",
    "find_state_dict",
    "state_dict_mismatch",
]

_FACTORY_MARK = "__aeinterp_factory__"


def factory(fn: Any) -> Any:
    """Mark ``fn`` as a model factory (or head factory) that recipes may name.

    Recipes can name any ``torch.nn.Module`` subclass; a plain function is only
    called when marked::

        @aeinterp.factory
        def build(n_features: int) -> nn.Module: ...
    """
    setattr(fn, _FACTORY_MARK, True)
    return fn


def _is_marked(obj: Any) -> bool:
    try:
        return vars(obj).get(_FACTORY_MARK) is True  # not getattr: objects with __getattr__ answer anything
    except TypeError:
        return False


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/code/") or "/code/" in n for n in zf.namelist())


@contextlib.contextmanager
def _importable(base_dir: Path | None) -> Iterator[None]:
    """Let ``package.module`` resolve against the recipe's folder while importing."""
    if base_dir is None:
        yield
        return
    sys.path.insert(0, str(base_dir))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(base_dir))


def import_factory(spec: str, base_dir: Path | None = None, *, role: str = "factory") -> Any:
    """Resolve ``package.module:Name`` (the recipe's folder is importable too) without calling it.

    Standard-library and builtin modules are refused before anything is imported.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(f"{role} {spec!r} must look like 'package.module:Name'")
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top.startswith("_"):
        raise ModelError(
            f"{role} {spec!r} names the Python standard library ({top}); a recipe may only name a torch.nn.Module "
            "class or a function marked with @aeinterp.factory, so it was not called"
        )
    with _importable(base_dir):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelError(f"cannot import {module_name!r} for factory {spec!r}: {exc}") from None
        except Exception as exc:  # importing the user's module failed inside it
            raise ModelError(f"importing {module_name!r} for {role} {spec!r} raised {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if part.startswith("__") or not hasattr(obj, part):
            raise ModelError(f"{module_name!r} has no attribute {attr!r} ({role} {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{role} {spec!r} is not callable")
    return obj


def resolve_factory(spec: str, base_dir: Path | None = None, *, role: str = "factory", trusted: Collection[str] = ()) -> Any:
    """The callable ``spec`` names, checked before anyone calls it.

    Allowed: a ``torch.nn.Module`` subclass, a function marked with
    :func:`factory`, or a spec listed in ``trusted``. Anything else is a
    :class:`ModelError` and is not called.
    """
    obj = import_factory(spec, base_dir, role=role)
    if inspect.isclass(obj) and issubclass(obj, nn.Module):
        return obj
    if _is_marked(obj) or spec in set(trusted):
        return obj
    kind = f"the class {obj.__qualname__}" if inspect.isclass(obj) else f"a {type(obj).__name__}"
    raise ModelError(
        f"{role} {spec!r} is {kind}, not a torch.nn.Module subclass, so it was not called: a recipe may only name "
        "module classes, or functions their author marked with @aeinterp.factory (or that you trust with "
        "--trust-factory / Runner(trusted_factories=...))"
    )


def _unrecognised(path: Path) -> str | None:
    """Why ``path`` cannot be a file ``torch.save`` wrote, or None when it could be one."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not head:
        return "is empty"
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch's zip format, or a legacy pickle
        return None
    start = head.lstrip()[:1]
    if start in (b"{", b"["):
        return "is JSON text, not a torch file"
    if start == b"<":
        return "is HTML or XML text (a saved web page or download error?), not a torch file"
    try:
        head.decode("utf-8")
        return "is a text file, not a torch file"
    except UnicodeDecodeError:
        return "is not a file torch.save writes (unrecognised binary content; damaged or another format?)"


def _torch_load(path: Path, trust: bool, base_dir: Path | None = None, map_location: torch.device | str = "cpu") -> Any:
    try:
        with _importable(base_dir):  # a trusted whole-model pickle finds its class beside the recipe
            return torch.load(path, map_location=map_location, weights_only=not trust)
    except Exception as exc:
        why = _unrecognised(path)
        if why is not None:
            raise ModelError(f"cannot load model file {path}: it {why}") from None
        text = str(exc)
        if not trust and ("Unsupported global" in text or "not an allowed global" in text):
            raise ModelError(
                f"{path} holds pickled Python objects, which aeinterp does not load by default "
                "(loading them can run arbitrary code). Save a state dict and name its factory, "
                "or, if you trust the file, set `trust: true` in the model section."
            ) from None
        if isinstance(exc, (ModuleNotFoundError, AttributeError)):
            raise ModelError(
                f"cannot load the pickled model in {path}: {exc}. A whole-model pickle needs the class it was saved "
                "from to be importable: put its module beside the recipe (that folder is importable) or install it, "
                "or save a state dict and load it with `factory:`"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise ModelError(f"cannot load model file {path}: it looks damaged or truncated ({type(exc).__name__}: {first[:200]})") from None


# where training checkpoints keep the weights (PyTorch tutorials, Lightning, common scripts)
STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model", "net", "module", "weights")
# prefixes wrappers add to every key (Lightning's LightningModule attribute, DataParallel, torch.compile)
STATE_DICT_PREFIXES = ("model.", "module.", "net.", "_orig_mod.")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def find_state_dict(obj: Mapping[str, Any], source: str = "the file") -> tuple[dict[str, torch.Tensor], str]:
    """The state dict inside a checkpoint and the key it was under (``""`` when ``obj`` is one)."""
    if _is_state_dict(obj):
        return dict(obj), ""
    for key in STATE_DICT_KEYS:
        inner = obj.get(key)
        if _is_state_dict(inner):
            return dict(inner), key  # type: ignore[arg-type]
    keys = ", ".join(map(repr, list(obj)[:12]))
    raise ModelError(
        f"{source} is a dict without a state dict of tensors (keys: {keys}); expected a plain state dict or one under {', '.join(STATE_DICT_KEYS)}"
    )


def _fit_prefix(state: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """``state`` without a wrapper's key prefix when removing it makes the keys match ``wanted``."""
    if set(state) == wanted:
        return state
    for prefix in STATE_DICT_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix) :]: v for k, v in state.items()}
            if set(stripped) == wanted:
                return stripped
    return state


def state_dict_mismatch(module: nn.Module, state: Mapping[str, torch.Tensor], limit: int = 8) -> str:
    """Missing keys, unexpected keys and shapes that differ, readably (``""`` when ``state`` fits)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]

    def listed(title: str, items: list[str]) -> str:
        more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
        return f"{title} ({len(items)}): {', '.join(items[:limit])}{more}" if items else ""

    return "; ".join(
        p for p in (listed("missing keys", missing), listed("unexpected keys", unexpected), listed("shapes that differ", shapes)) if p
    )


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from ..errors import require

    st = require("safetensors.torch", "safetensors", "to read .safetensors files")
    try:
        return st.load_file(str(path), device="cpu")
    except Exception as exc:
        raise ModelError(f"cannot read safetensors file {path}: {type(exc).__name__}: {exc}") from None


def load_module(
    path: Path,
    *,
    format: str = "auto",
    factory: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    trust: bool = False,
    base_dir: Path | None = None,
    device: str | torch.device | None = None,
    trusted_factories: Collection[str] = (),
) -> nn.Module:
    """Load the torch module a recipe's ``model.path`` points at.

    Saved tensors are mapped to ``device`` (``torch.load(map_location=...)``;
    default the CPU), so a model saved on a GPU loads on a machine without one.
    """
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"model path {path} is a folder; give the model file")
    location = map_location(device)
    if format == "torchscript" or (format == "auto" and _is_torchscript(path)):
        try:
            return torch.jit.load(str(path), map_location=location)
        except Exception as exc:
            raise ModelError(f"cannot load TorchScript file {path}: {exc}") from None
    if format == "safetensors" or (format == "auto" and path.suffix == ".safetensors"):
        state, where = _load_safetensors(path), ""
    else:
        obj = _torch_load(path, trust, base_dir, location)
        if isinstance(obj, nn.Module):
            return obj
        if not isinstance(obj, Mapping):
            raise ModelError(f"{path} holds a {type(obj).__name__}; expected a TorchScript module, a checkpoint or a state dict")
        if obj.get("format") == CHECKPOINT_FORMAT:
            return _from_checkpoint(path, dict(obj))
        state, where = find_state_dict(obj, str(path))
    found = f"the state dict under {where!r} in {path}" if where else f"the state dict in {path}"
    if factory is None:
        raise ModelError(
            f"{found} holds weights only; name the class that builds the model with `factory: package.module:Class` (and `kwargs:`)"
        )
    build = resolve_factory(factory, base_dir, trusted=trusted_factories)
    try:
        module = build(**dict(kwargs or {}))
    except Exception as exc:
        raise ModelError(f"factory {factory!r} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise ModelError(f"factory {factory!r} returned {type(module).__name__}, not a torch.nn.Module")
    state = _fit_prefix(state, set(module.state_dict()))
    problem = state_dict_mismatch(module, state)
    if problem:
        raise ModelError(f"{found} does not fit {factory!r} (kwargs {dict(kwargs or {})}): {problem}")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{found} does not fit {factory!r}: {str(exc).splitlines()[0]}") from None
    return module


def _from_checkpoint(path: Path, checkpoint: dict[str, Any]) -> nn.Module:
    """An aeinterp checkpoint, its config checked and its size estimated before anything is allocated."""
    config, arch = checkpoint.get("config"), checkpoint.get("architecture")
    if not isinstance(config, Mapping) or not isinstance(arch, str) or "state_dict" not in checkpoint:
        missing = [
            k
            for k, ok in (
                ("config", isinstance(config, Mapping)),
                ("architecture", isinstance(arch, str)),
                ("state_dict", "state_dict" in checkpoint),
            )
            if not ok
        ]
        raise ModelError(
            f"{path} says it is an aeinterp checkpoint but lacks {', '.join(missing)}; re-save it with `aeinterp train` or model.checkpoint()"
        )
    config = dict(config)
    try:
        shape, latent = config.pop("input_shape"), config.pop("latent_dim")
        check_model_memory(
            lambda: build_architecture(arch, shape, latent, **config), f"the checkpoint {path.name} (latent_dim {latent}, {arch})"
        )
        return from_checkpoint(checkpoint)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"the aeinterp checkpoint {path} is damaged: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


def build_builtin(
    architecture: str,
    data: ArrayDataset,
    *,
    latent_dim: int,
    options: Mapping[str, Any] | None = None,
    train: TrainConfig = TrainConfig(),
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Build a built-in architecture for ``data`` and train it on the fit split
    (on ``device``, default the CPU; initial weights are drawn on the CPU, so a
    seed gives the same starting point everywhere)."""
    name = DEFAULT_FOR_KIND[data.kind] if architecture == "auto" else architecture
    options = dict(options or {})
    y_fit = None
    if getattr(ARCHITECTURES.get(name), "supervised", False):
        codes, classes = data.label_codes()
        options.setdefault("n_classes", len(classes))
        y_fit = codes[data.fit_index]
    check_model_memory(
        lambda: build_architecture(name, data.sample_shape, latent_dim, **options),
        f"model.builtin {name} with latent_dim {latent_dim:,} on samples of shape {data.sample_shape}",
        training=True,
    )
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, caller's RNG untouched
        torch.manual_seed(train.seed)
        module = build_architecture(name, data.sample_shape, latent_dim, **options)
    if device is not None:
        module = module.to(resolve_device(device))
    result = train_autoencoder(module, data.x_fit, train, x_val=data.x_explain, y_fit=y_fit, progress=progress)
    return module, result


def adapt(
    module: nn.Module,
    data: ArrayDataset,
    *,
    encoder: str | None = None,
    decoder: str | None = None,
    code: int | str | None = None,
    head: str | None = None,
    task_dims: list[int] | None = None,
    description: str = "",
    device: str | torch.device | None = None,
    base_dir: Path | None = None,
    trusted_factories: Collection[str] = (),
) -> TorchAutoencoder:
    """Wrap ``module`` and check it fits ``data``: the code is 2-D, the reconstruction has the input's shape.

    A built-in supervised model declares its own head and task dims; for other
    models ``head`` (an attribute name, or ``package.module:callable`` building
    the head) and ``task_dims`` come from the recipe.
    """
    if head is None and getattr(module, "supervised", False):
        head, task_dims = "head", list(module.task_dims)  # type: ignore[arg-type, attr-defined]
    head_fn: Any = head
    if head is not None and ":" in head:
        build_head = resolve_factory(head, base_dir, role="head", trusted=trusted_factories)
        try:
            head_fn = build_head()
        except Exception as exc:
            raise ModelError(f"head {head!r} failed to build: {type(exc).__name__}: {exc}") from None
        if not callable(head_fn):
            raise ModelError(f"head {head!r} built a {type(head_fn).__name__}, which cannot be called on the code")
    if device is not None and isinstance(head_fn, nn.Module):
        head_fn = head_fn.to(resolve_device(device))
    class_names = data.label_codes()[1] if head is not None and data.labels is not None else None
    model = TorchAutoencoder(
        module,
        data.sample_shape,
        encoder=encoder,
        decoder=decoder,
        code=code,
        description=description,
        head=head_fn,
        task_dims=task_dims,
        class_names=class_names,
        device=device,
    )
    probe = as_tensor(data.x_explain[:2], model)
    with frozen(model), torch.no_grad():
        try:
            z = model.encode(probe)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"the model cannot encode the data: samples have shape {data.sample_shape} ({data.kind}); "
                f"the encoder raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        try:
            x_hat = model.decode(z)
        except Exception as exc:
            raise ModelError(f"the model cannot decode its own code of shape {tuple(z.shape)}: {type(exc).__name__}: {exc}") from None
        if tuple(x_hat.shape[1:]) != data.sample_shape:
            raise ModelError(
                f"the decoder returns samples of shape {tuple(x_hat.shape[1:])}, but the data's samples have shape {data.sample_shape}"
            )
        if model.task_dims is not None:
            if max(model.task_dims) >= z.shape[1] or min(model.task_dims) < 0:
                raise ModelError(f"task_dims {model.task_dims} are outside the code's {z.shape[1]} dims")
            try:
                logits = model.predict(z)
            except Exception as exc:
                raise ModelError(f"the classifier head fails on the task code: {type(exc).__name__}: {exc}") from None
            if class_names is not None and logits.shape[1] != len(class_names):
                raise ModelError(f"the head returns {logits.shape[1]} logits but the labels have {len(class_names)} classes")
            if model.class_names is None:
                model.class_names = [f"class{c}" for c in range(logits.shape[1])]
    return model
