"""The Explainer base class that plugin authors subclass.

An explainer declares a ``name``, a nested pydantic ``Params`` model (unknown
keys are refused), its :class:`Capabilities` as data, and implements one
method::

    def explain(self, model, data, *, target, rng) -> Explanation

``__init__`` only stores the validated params and the progress reporter; all
work happens in ``explain``. Heavy libraries are imported inside ``explain``
(or a module it imports), never at module level, so discovering plugins stays
cheap.
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from .data import DATA_KINDS, Dataset, subsample_indices
from .errors import CapabilityError
from .explanation import Explanation
from .model import Model, is_supervised
from .progress import NullProgress, Progress
from .targets import Target

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Explainer", "ExplainerParams", "Capabilities", "StepRef", "step_ref_fields"]

# the unsupervised targets; explainers that handle ``prediction`` list it explicitly
ALL_TARGETS = frozenset({"latent", "latent_pca", "reconstruction", "reconstruction_error"})


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any or isinstance(annotation, bool):
        return True
    return any(_accepts_bool(arg) for arg in typing.get_args(annotation))


def reject_bool_numbers(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A ``field_validator("*", mode="before")``: ``true`` / ``false`` is no number (pydantic would take it as 1 / 0)."""
    if isinstance(value, bool) and info.field_name is not None:
        field = cls.model_fields.get(info.field_name)
        if field is not None and not _accepts_bool(field.annotation):
            raise ValueError(f"expected a number, got {str(value).lower()} (a boolean)")
    return value


class ExplainerParams(BaseModel):
    """Base of every explainer's ``Params``: unknown keys are an error, booleans are no numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    _no_bool_numbers = field_validator("*", mode="before")(classmethod(reject_bool_numbers))


class _StepRefMarker:
    """Marks a params field whose value is the alias of an earlier step."""


StepRef = Annotated[str, _StepRefMarker]
"""A param naming an earlier step of the same recipe by alias, e.g.
``features_from: StepRef | None = None``. The recipe validator checks it names
an earlier step; the explainer reads that step's Explanation from
``self.results[alias]``."""


def _marks_step_ref(annotation: Any) -> bool:
    if annotation is _StepRefMarker:
        return True
    return any(_marks_step_ref(arg) for arg in typing.get_args(annotation)) or any(
        m is _StepRefMarker for m in getattr(annotation, "__metadata__", ())
    )


def step_ref_fields(params: type[BaseModel]) -> list[str]:
    """Names of the fields of ``params`` declared as :data:`StepRef`."""
    return [
        name for name, f in params.model_fields.items() if _marks_step_ref(f.annotation) or any(m is _StepRefMarker for m in f.metadata)
    ]


@dataclass(frozen=True)
class Capabilities:
    """What an explainer can do, as data the runner checks before calling it.

    targets
        targets it can explain (``latent``, ``latent_pca``, ``reconstruction``, ``reconstruction_error``,
        and ``prediction`` for supervised models when listed explicitly);
    data_kinds
        ``tabular``, ``image``, ``sequence``;
    needs_gradients
        it differentiates through the model (TorchScript and nn.Module models are fine);
    deterministic
        the same seed gives the same result;
    local
        it returns per-sample attributions in ``Explanation.local``;
    splits
        how its work splits for an executor: ``none``, ``samples`` (a reduction
        over sample chunks) or ``targets`` (one piece per target); explainers
        that split subclass :class:`aeinterp.toolkit.chunks.ChunkedExplainer`;
    chunk_invariant
        (``splits`` explainers) its result does not depend on how its units are
        cut into chunks (equal to float rounding), so an executor that runs
        several chunks at once may cut smaller ones: :class:`~aeinterp.toolkit.chunks.ChunkedExplainer`
        then makes at least ``4 x workers`` chunks (of at least 64 samples, or 1 target);
    features
        what the importance columns are: ``groups`` (the data's feature groups,
        or the code's dims for decoder-side explanations; the runner checks the
        names) or ``own`` (columns the explainer defines, e.g. latent sizes).
    """

    targets: frozenset[str] = ALL_TARGETS
    data_kinds: frozenset[str] = frozenset(DATA_KINDS)
    needs_gradients: bool = False
    deterministic: bool = True
    local: bool = False
    splits: str = "none"
    features: str = "groups"
    chunk_invariant: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "targets": sorted(self.targets),
            "data_kinds": sorted(self.data_kinds),
            "needs_gradients": self.needs_gradients,
            "deterministic": self.deterministic,
            "local": self.local,
            "splits": self.splits,
            "features": self.features,
            "chunk_invariant": self.chunk_invariant,
        }


class Explainer(ABC):
    """Base class of every explainer plugin."""

    name: ClassVar[str]
    Params: ClassVar[type[ExplainerParams]] = ExplainerParams
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(
        self,
        params: ExplainerParams | Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
        results: Mapping[str, Explanation] | None = None,
    ) -> None:
        if isinstance(params, self.Params):
            self.params = params
        else:
            self.params = self.Params.model_validate(dict(params or {}))
        self.progress: Progress = progress or NullProgress()
        #: results of the earlier steps of the run, by alias (read-only)
        self.results: Mapping[str, Explanation] = MappingProxyType(dict(results or {}))
        #: rows of each split this explanation used, recorded by :meth:`take_rows`
        self.rows_used: dict[str, np.ndarray] = {}

    def take_rows(self, data: Dataset, split: str, n: int | None, rng: np.random.Generator) -> np.ndarray:
        """At most ``n`` samples of ``data``'s ``split`` (``"explain"`` or ``"fit"``), drawn
        without replacement (all of them if ``n`` is None), *recorded*: the step's
        ``.npz`` then holds ``explain_index`` / ``fit_index``, the dataset rows
        the step used, so a result can be checked row by row against another tool."""
        if split not in ("explain", "fit"):
            raise ValueError(f"split must be 'explain' or 'fit', got {split!r}")
        x = data.x_explain if split == "explain" else data.x_fit
        idx = subsample_indices(x.shape[0], n, rng)
        self.rows_used[split] = idx
        return x if len(idx) == x.shape[0] else x[idx]

    def result_of(self, alias: str) -> Explanation:
        """The Explanation of an earlier step (for :data:`StepRef` params)."""
        try:
            return self.results[alias]
        except KeyError:
            raise CapabilityError(
                f"{self.name} needs the result of step {alias!r}, which did not produce one (it failed or has not run)",
                plugin=self.name,
            ) from None

    @abstractmethod
    def explain(self, model: Model, data: Dataset, *, target: Target | str, rng: np.random.Generator) -> Explanation:
        """Explain every target of ``model`` on ``data`` at once."""

    # --- optional hooks -------------------------------------------------------------
    def check(self, model: Model, data: Dataset, target: Target | str) -> None:
        """Raise :class:`CapabilityError` if this explainer cannot run here.

        The default checks :attr:`capabilities`; override to add model-specific
        checks, and call ``super().check(...)``.
        """
        target = Target(target).value
        caps = self.capabilities
        if target not in caps.targets:
            raise CapabilityError(
                f"{self.name} cannot explain target {target!r}; it supports {', '.join(sorted(caps.targets))}",
                plugin=self.name,
            )
        if target == Target.PREDICTION.value and not is_supervised(model):
            raise CapabilityError(
                "target 'prediction' needs a supervised model: declare its classifier head and task dims "
                "(`head:` and `task_dims:` in the recipe's model section) or use the builtin supervised_vae",
                plugin=self.name,
            )
        if data.kind not in caps.data_kinds:
            raise CapabilityError(
                f"{self.name} does not support {data.kind} data; it supports {', '.join(sorted(caps.data_kinds))}",
                plugin=self.name,
            )

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Figure]:
        """Extra matplotlib figures for this explainer's result, keyed by a short name.

        Reporters save each as ``<alias>.<key>.png`` and embed it in the HTML
        report. The default is none: every explainer gets the importance heatmap.
        """
        return {}

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
