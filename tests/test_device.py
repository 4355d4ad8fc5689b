"""``device:`` in recipes, ``--device`` on the CLI, ``device=`` from Python; CUDA checks run only where a GPU is."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console

from aeinterp import run_explainer
from aeinterp.cli import main
from aeinterp.device import device_name, resolve_device
from aeinterp.errors import ModelError, RecipeError
from aeinterp.io.datasets import load_dataset
from aeinterp.model import TorchAutoencoder, as_tensor
from aeinterp.models.loading import adapt, build_builtin, load_module
from aeinterp.models.training import TrainConfig
from aeinterp.recipe.schema import parse_recipe
from aeinterp.run.results import load_results
from aeinterp.runner import Runner

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(
    not CUDA, reason="needs a CUDA GPU (none on this machine); bench/gpu_check.py runs these checks on a GPU machine"
)


def test_resolve_device_specs() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if CUDA else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    for bad in ("gpu", "cuda:x", "cpu:0", "cuda:-1", ""):
        with pytest.raises(ModelError, match="is not one of auto | cpu | cuda"):
            resolve_device(bad)


@pytest.mark.skipif(CUDA, reason="checks the message on a machine without CUDA")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match=r"sees no CUDA GPU \(available: cpu"):
        resolve_device("cuda")
    with pytest.raises(ModelError, match="use `device: auto` or `cpu`"):
        resolve_device("cuda:1")


def test_recipe_device_key_is_validated() -> None:
    base = "data: {builtin: wine}\nmodel: {builtin: mlp, latent_dim: 2}\nexplainers: [{name: permutation}]\n"
    assert parse_recipe(base).recipe.device == "auto"
    assert parse_recipe("device: cuda:1\n" + base).recipe.device == "cuda:1"
    with pytest.raises(RecipeError, match="device"):
        parse_recipe("device: gpu\n" + base)


def test_adapter_trainer_and_loader_take_a_device(tmp_path: Path) -> None:
    data = load_dataset(builtin="wine")
    module, _ = build_builtin("mlp", data, latent_dim=3, train=TrainConfig(epochs=2), device="cpu")
    reference, _ = build_builtin("mlp", data, latent_dim=3, train=TrainConfig(epochs=2))
    for a, b in zip(module.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # device cpu is the default path exactly
    model = adapt(module, data, device="cpu")
    assert model.device == torch.device("cpu")
    assert as_tensor(data.x_explain[:3], model).device == model.device
    torch.save(module.checkpoint(), tmp_path / "m.pt")
    loaded = load_module(tmp_path / "m.pt", device="cpu")
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    wrapped = TorchAutoencoder(copy.deepcopy(module), data.sample_shape, device="cpu")
    assert wrapped.device.type == "cpu" and device_name(wrapped.device) == "cpu"
    with pytest.raises(ModelError, match="not one of"):
        TorchAutoencoder(module, data.sample_shape, device="tpu")


def test_recipe_and_cli_device_cpu(tmp_path: Path) -> None:
    recipe = {
        "device": "cpu",
        "cache": False,
        "data": {"builtin": "wine"},
        "model": {"builtin": "mlp", "latent_dim": 2, "train": {"epochs": 2}},
        "explainers": [{"name": "permutation", "params": {"repeats": 1}}],
        "report": {"terminal": False, "plots": False, "html": False},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    outcome = Runner(console=Console(file=io.StringIO()), quiet=True).run_file(path, out=tmp_path / "out")
    assert outcome.ok and load_results(tmp_path / "out").doc["model"]["device"] == "cpu"
    assert main(["run", str(path), "--quiet", "--device", "cpu", "--out", str(tmp_path / "cli")]) == 0
    assert load_results(tmp_path / "cli").doc["model"]["device"] == "cpu"
    assert main(["run", str(path), "--quiet", "--device", "gpu", "--out", str(tmp_path / "bad")]) == 2
    assert (
        main(["train", "--data", "builtin:wine", "--latent-dim", "2", "--epochs", "1", "--device", "cpu", "-o", str(tmp_path / "t.pt")])
        == 0
    )
    assert (tmp_path / "t.pt").exists()


EXPLAINERS = [
    ("permutation", {"repeats": 2}),
    ("zero_ablation", {"baseline": "mean"}),
    ("mutual_information", {}),
    ("jacobian", {}),
    ("integrated_gradients", {"steps": 16}),
    ("deepshap", {"n_background": 16, "max_samples": 16}),
]


@needs_cuda
@pytest.mark.parametrize(("name", "params"), EXPLAINERS, ids=[e[0] for e in EXPLAINERS])
def test_every_explainer_on_cuda_matches_cpu(name: str, params: dict) -> None:
    data = load_dataset(builtin="breast_cancer", max_samples=300)
    module, _ = build_builtin("mlp", data, latent_dim=3, options={"hidden": [16]}, train=TrainConfig(epochs=5))
    registry = Runner().registry
    cpu = run_explainer(registry[name].cls, adapt(copy.deepcopy(module), data, device="cpu"), data, params=params, seed=0)
    gpu_model = adapt(copy.deepcopy(module), data, device="cuda")
    assert gpu_model.device.type == "cuda"
    gpu = run_explainer(registry[name].cls, gpu_model, data, params=params, seed=0)
    np.testing.assert_allclose(gpu.importance, cpu.importance, rtol=2e-3, atol=1e-5)


@needs_cuda
def test_builtin_trains_on_cuda() -> None:
    data = load_dataset(builtin="wine")
    module, result = build_builtin("mlp", data, latent_dim=2, train=TrainConfig(epochs=3), device="cuda")
    assert next(module.parameters()).device.type == "cuda" and result.val_error is not None
