"""Built-in architectures train for real, round-trip through weights-only checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeinterp import ModelError
from aeinterp.data import ArrayDataset
from aeinterp.io.datasets import load_dataset
from aeinterp.models.architectures import build_architecture, from_checkpoint
from aeinterp.models.loading import adapt, load_module
from aeinterp.models.training import TrainConfig, reconstruction_error, train_autoencoder


@pytest.mark.parametrize(
    ("builtin", "arch", "options"),
    [
        ("breast_cancer", "mlp", {"hidden": [16]}),
        ("breast_cancer", "mlp", {"hidden": [16], "variational": True}),
        ("digits", "conv2d", {"channels": [4, 8]}),
        ("sines", "conv1d", {"channels": [4, 8]}),
        ("sines", "lstm", {"hidden": 8}),
    ],
)
def test_training_reduces_held_out_error(builtin: str, arch: str, options: dict) -> None:
    data = load_dataset(builtin=builtin, max_samples=300)
    torch.manual_seed(0)
    module = build_architecture(arch, data.sample_shape, 3, **options)
    before = reconstruction_error(module, data.x_explain)
    result = train_autoencoder(module, data.x_fit, TrainConfig(epochs=8, lr=5e-3), x_val=data.x_explain)
    assert result.val_error is not None and result.val_error < 0.9 * before
    model = adapt(module, data)
    assert model.latent_dim == 3
    z = model.encode(torch.as_tensor(data.x_explain[:7]))
    assert z.shape == (7, 3)
    assert model.decode(z).shape == (7, *data.sample_shape)


def test_vae_encode_returns_mean_and_logvar_and_adapter_takes_mean() -> None:
    module = build_architecture("mlp", (5,), 2, hidden=[4], variational=True)
    x = torch.randn(3, 5)
    mu, logvar = module.encode(x)
    data = ArrayDataset(
        x=np.zeros((4, 5), np.float32),
        kind="tabular",
        feature_names=list("abcde"),
        groups=(),
        fit_index=np.arange(2),
        explain_index=np.arange(2, 4),
    )
    model = adapt(module, data)
    torch.testing.assert_close(model.encode(x), mu)


def test_checkpoint_loads_with_weights_only(tmp_path) -> None:  # noqa: ANN001
    module = build_architecture("conv2d", (1, 8, 8), 4, channels=[4, 8])
    path = tmp_path / "m.pt"
    torch.save(module.checkpoint(), path)
    raw = torch.load(path, weights_only=True)  # no pickle of code
    rebuilt = from_checkpoint(raw)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(rebuilt.encode(x), module.encode(x))
    loaded = load_module(path)
    torch.testing.assert_close(loaded.decode(module.encode(x)), module.decode(module.encode(x)))


def test_unknown_architecture_and_bad_options() -> None:
    with pytest.raises(ModelError, match="did you mean 'lstm'"):
        build_architecture("lstn", (4, 2), 2)
    with pytest.raises(ModelError, match="bad options"):
        build_architecture("mlp", (4,), 2, depth=3)
    with pytest.raises(ModelError, match="needs image samples"):
        build_architecture("conv2d", (4,), 2)


def test_supervised_vae_learns_the_labels_and_exposes_its_head(tmp_path) -> None:  # noqa: ANN001
    from aeinterp.model import is_supervised
    from aeinterp.models.loading import build_builtin
    from aeinterp.targets import Target, evaluate_target

    data = load_dataset(builtin="breast_cancer")
    module, result = build_builtin(
        "supervised_vae", data, latent_dim=5, options={"task_dims": 2, "hidden": [16]}, train=TrainConfig(epochs=25, lr=3e-3)
    )
    model = adapt(module, data)
    assert is_supervised(model) and model.task_dims == [0, 1] and model.class_names == ["benign", "malignant"]
    codes, _ = data.label_codes()
    x = torch.as_tensor(data.x_explain)
    with torch.no_grad():
        logits = evaluate_target(model, Target.PREDICTION, x)
        # the head reads only the task dims: changing a nuisance dim changes no logit
        z = model.encode(x)
        z2 = z.clone()
        z2[:, 2:] += 3.0
        torch.testing.assert_close(model.predict(z2), model.predict(z))
    assert logits.shape == (len(x), 2)
    assert (logits.argmax(1).numpy() == codes[data.explain_index]).mean() > 0.9
    path = tmp_path / "svae.pt"
    torch.save(module.checkpoint(), path)
    again = adapt(load_module(path), data)
    with torch.no_grad():
        torch.testing.assert_close(again.predict(again.encode(x)), logits)


def test_supervised_vae_without_labels_is_a_clear_error() -> None:
    from aeinterp import DataError
    from aeinterp.models.loading import build_builtin

    with pytest.raises(DataError, match="has no labels"):
        build_builtin("supervised_vae", load_dataset(builtin="sines"), latent_dim=4)
