"""A conformance base class every explainer's tests subclass.

Usage::

    from aeinterp.testing import ExplainerConformance

    class TestMyExplainer(ExplainerConformance):
        explainer = MyExplainer
        params = {"samples": 50}     # fast settings

It checks, on a hand-built model: result shapes and names for every supported
target, determinism under a seed, that the planted features come out on top
(``ground_truth = True``), and that the model is left exactly as it was found —
parameters, hooks, train/eval mode, ``requires_grad`` — after success and after
a forced error.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from ..errors import ExplainerError
from ..explainer import Explainer
from ..model import TorchAutoencoder
from ..run.dispatch import run_explainer
from ..targets import Target
from .planted import Planted, planted_autoencoder

__all__ = ["ExplainerConformance", "model_state", "FailingModel"]


def model_state(module: torch.nn.Module) -> dict[str, Any]:
    """Everything an explainer must leave untouched."""
    return {
        "params": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "requires_grad": [p.requires_grad for p in module.parameters()],
        "training": [m.training for m in module.modules()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), len(getattr(m, "_backward_pre_hooks", {})))
            for m in module.modules()
        ],
    }


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["training"] == after["training"], "train/eval mode changed"
    assert before["requires_grad"] == after["requires_grad"], "requires_grad changed"
    assert before["hooks"] == after["hooks"], "hooks left on the model"
    for k, v in before["params"].items():
        assert torch.equal(v, after["params"][k]), f"parameter {k} changed"


class FailingModel(TorchAutoencoder):
    """Raises from ``encode`` or ``decode`` once more than ``fail_after`` calls were made to either."""

    def __init__(self, inner: TorchAutoencoder, fail_after: int = 1) -> None:
        super().__init__(
            inner.module,
            inner.input_shape,
            code=inner.code,
            head=getattr(inner, "_head", None),
            task_dims=getattr(inner, "task_dims", None),
            class_names=getattr(inner, "class_names", None),
        )
        self.calls = 0
        self.fail_after = fail_after

    def _count(self) -> None:
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("forced failure for the conformance test")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._count()
        return super().encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self._count()
        return super().decode(z)


class ExplainerConformance:
    explainer: ClassVar[type[Explainer]]
    params: ClassVar[dict[str, Any]] = {}
    ground_truth: ClassVar[bool] = True
    linear_planted: ClassVar[bool] = False
    #: what the columns of a ``reconstruction`` explanation are: the data's feature
    #: groups, or the latent code (for explainers of the decoder, e.g. formulas x^ = f(z))
    reconstruction_inputs: ClassVar[str] = "groups"

    @pytest.fixture
    def planted(self) -> Planted:
        return planted_autoencoder(linear=self.linear_planted)

    @property
    def default_target(self) -> str:
        """The target the generic checks use: ``latent`` if supported, else the first supported one."""
        targets = self.explainer.capabilities.targets
        return "latent" if "latent" in targets else sorted(targets)[0]

    def _run(self, planted: Planted, target: str | None = None, seed: int = 0, model: Any = None):
        target = target or self.default_target
        if model is None:
            planted = self._planted_for(planted, target)
            model = planted.model
        return run_explainer(self.explainer, model, planted.data, target=target, seed=seed, params=self.params)

    def _planted_for(self, planted: Planted, target: str) -> Planted:
        if target == "prediction" and getattr(planted.model, "task_dims", None) is None:
            return planted_autoencoder(linear=self.linear_planted, supervised=True)
        return planted

    def test_registers_cleanly(self) -> None:
        from ..plugins.registry import ExplainerRegistry

        registry = ExplainerRegistry()
        registry.add(self.explainer)
        assert self.explainer.name in registry

    @pytest.mark.parametrize("target", [t.value for t in Target])
    def test_shapes_for_each_target(self, planted: Planted, target: str) -> None:
        if target not in self.explainer.capabilities.targets:
            pytest.skip(f"{self.explainer.name} does not support {target}")
        planted = self._planted_for(planted, target)
        result = self._run(planted, target)
        n_targets = {
            "latent": len(planted.dependencies),
            "latent_pca": len(planted.dependencies),
            "reconstruction": planted.data.n_features,
            "reconstruction_error": 1,
            "prediction": 2,
        }[target]
        n_columns = (
            len(planted.dependencies) if target == "reconstruction" and self.reconstruction_inputs == "latent" else len(planted.data.groups)
        )
        assert result.importance.shape == (n_targets, n_columns)
        assert np.isfinite(result.importance).all()
        if target == "reconstruction" and self.reconstruction_inputs == "latent":
            assert result.feature_names == [f"z{j}" for j in range(len(planted.dependencies))]
        else:
            assert result.feature_names == planted.data.group_names
        assert len(result.target_names) == n_targets
        assert result.target == target
        if target == "latent_pca":  # the core records which directions were explained
            assert result.target_names == [f"pc{j}" for j in range(n_targets)]
            ratio = result.extras["latent_pca"]["explained_variance_ratio"]
            assert len(ratio) == n_targets and abs(sum(ratio) - 1.0) < 1e-6 and ratio == sorted(ratio, reverse=True)
        if result.local is not None:
            assert result.local.shape[1:] == result.importance.shape
        if target == "prediction" and self.ground_truth:  # logits (-z0, z0) depend on z0's features only
            deps = planted.dependencies[0]
            for row in result.importance:
                assert set(np.argsort(-row)[: len(deps)].tolist()) == set(deps)

    def test_deterministic_under_seed(self, planted: Planted) -> None:
        if not self.explainer.capabilities.deterministic:
            pytest.skip("declared non-deterministic")
        a, b = self._run(planted, seed=3), self._run(planted, seed=3)
        np.testing.assert_allclose(a.importance, b.importance, rtol=1e-6, atol=1e-7)

    def test_planted_features_on_top(self, planted: Planted) -> None:
        if not self.ground_truth:
            pytest.skip("no ground-truth claim for this explainer")
        if "latent" not in self.explainer.capabilities.targets:
            pytest.skip("checked per target in test_shapes_for_each_target")
        result = self._run(planted, "latent")
        for j, deps in enumerate(planted.dependencies):
            top = set(np.argsort(-result.importance[j])[: len(deps)].tolist())
            assert top == set(deps), f"z{j}: expected {sorted(deps)} on top, got {sorted(top)}"

    def test_model_unchanged_after_success(self, planted: Planted) -> None:
        planted = self._planted_for(planted, self.default_target)
        module = planted.model.module
        module.train()  # the explainer must restore train mode too
        try:
            before = model_state(module)
            self._run(planted)
            assert_same_state(before, model_state(module))
        finally:
            module.eval()

    def test_model_unchanged_after_error(self, planted: Planted) -> None:
        planted = self._planted_for(planted, self.default_target)
        module = planted.model.module
        module.train()
        try:
            before = model_state(module)
            failing = FailingModel(planted.model, fail_after=0)  # the first model call raises
            with pytest.raises(ExplainerError, match="forced failure"):
                self._run(planted, model=failing)
            assert_same_state(before, model_state(module))
        finally:
            module.eval()
