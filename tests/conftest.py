"""Shared fixtures: small real models trained in seconds on bundled data."""

from __future__ import annotations

import pytest
import torch

from aeinterp.data import ArrayDataset
from aeinterp.io.datasets import load_dataset
from aeinterp.model import TorchAutoencoder
from aeinterp.models.loading import adapt, build_builtin
from aeinterp.models.training import TrainConfig

torch.set_num_threads(1)  # small models: one thread is faster and does not oversubscribe 2 cores


@pytest.fixture(autouse=True, scope="module")
def _seeded_module() -> None:
    """Module fixtures that build models start from the same random state on every xdist worker."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Each test starts from the same random state, whichever tests its worker ran before it."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets an empty result cache of its own (never ~/.cache/aeinterp)."""
    monkeypatch.setenv("AEINTERP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def _trained(builtin: str, arch: str, latent: int, epochs: int, **options) -> tuple[TorchAutoencoder, ArrayDataset]:
    data = load_dataset(builtin=builtin, max_samples=400)
    module, _ = build_builtin(arch, data, latent_dim=latent, options=options, train=TrainConfig(epochs=epochs, lr=3e-3))
    return adapt(module, data), data


@pytest.fixture(scope="session")
def tabular_model() -> tuple[TorchAutoencoder, ArrayDataset]:
    """MLP autoencoder, breast_cancer (30 features) -> 4."""
    return _trained("breast_cancer", "mlp", 4, 30, hidden=[16])


@pytest.fixture(scope="session")
def image_model() -> tuple[TorchAutoencoder, ArrayDataset]:
    """Conv autoencoder, digits 1x8x8 -> 5."""
    return _trained("digits", "conv2d", 5, 5, channels=[4, 8])


@pytest.fixture(scope="session")
def sequence_model() -> tuple[TorchAutoencoder, ArrayDataset]:
    """LSTM sequence autoencoder, sines 24 steps x 3 features -> 3."""
    return _trained("sines", "lstm", 3, 5, hidden=8)
