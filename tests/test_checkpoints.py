"""A user's checkpoints as they saved them: tutorial and Lightning dicts, safetensors, whole pickles, mismatches."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from aeinterp import ModelError
from aeinterp.models.loading import import_factory, load_module

MODEL_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, n=5, k=2, hidden=7):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(n, hidden), nn.Tanh(), nn.Linear(hidden, k))
            self.decoder = nn.Sequential(nn.Linear(k, hidden), nn.Tanh(), nn.Linear(hidden, n))

        def forward(self, x):
            return self.decoder(self.encoder(x))


    class Wrapper(nn.Module):  # a LightningModule keeps the autoencoder as self.model
        def __init__(self):
            super().__init__()
            self.model = Net()

        def forward(self, x):
            return self.model(x)
    """
)


@pytest.fixture()
def user_module(tmp_path: Path) -> tuple[str, Path]:
    """A model module beside the recipe, under a fresh name so no import cache helps."""
    name = f"usermodels_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODEL_SOURCE)
    return name, tmp_path


def _trained(name: str, folder: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    return import_factory(f"{name}:Net", folder)()


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    x = torch.randn(4, 5)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_tutorial_checkpoint_with_optimizer_state_loads(user_module) -> None:  # noqa: ANN001
    name, folder = user_module
    net = _trained(name, folder)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(3, 5)).sum().backward()
    opt.step()
    path = folder / "ckpt.pt"
    torch.save({"epoch": 7, "model_state_dict": net.state_dict(), "optimizer_state_dict": opt.state_dict(), "loss": 0.25}, path)
    _same_outputs(load_module(path, factory=f"{name}:Net", base_dir=folder), net)


def test_lightning_checkpoint_with_model_prefix_loads(user_module) -> None:  # noqa: ANN001
    name, folder = user_module
    wrapper = import_factory(f"{name}:Wrapper", folder)()
    path = folder / "epoch=3-step=100.ckpt"
    torch.save(
        {
            "epoch": 3,
            "global_step": 100,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": wrapper.state_dict(),
            "hyper_parameters": {"lr": 0.001},
        },
        path,
    )
    assert all(k.startswith("model.") for k in wrapper.state_dict())
    _same_outputs(load_module(path, factory=f"{name}:Net", base_dir=folder), wrapper.model)
    # the wrapper class itself takes the keys as they are
    _same_outputs(load_module(path, factory=f"{name}:Wrapper", base_dir=folder), wrapper)


def test_safetensors_loads_without_pickle(user_module) -> None:  # noqa: ANN001
    st = pytest.importorskip("safetensors.torch")
    name, folder = user_module
    net = _trained(name, folder)
    path = folder / "weights.safetensors"
    st.save_file(net.state_dict(), str(path))
    _same_outputs(load_module(path, factory=f"{name}:Net", base_dir=folder), net)


def test_a_state_dict_that_does_not_fit_lists_keys_and_shapes(user_module) -> None:  # noqa: ANN001
    name, folder = user_module
    net = _trained(name, folder)
    state = net.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["decoder.2.bias"]
    path = folder / "sd.pt"
    torch.save(state, path)
    with pytest.raises(ModelError) as info:
        load_module(path, factory=f"{name}:Net", kwargs={"hidden": 9}, base_dir=folder)
    msg = str(info.value)
    assert "missing keys (1): decoder.2.bias" in msg and "unexpected keys (1): extra.weight" in msg
    assert "encoder.0.weight (file (7, 5), model (9, 5))" in msg and "'hidden': 9" in msg


def test_a_dict_without_weights_says_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 1, "notes": "no weights"}, path)
    with pytest.raises(ModelError, match="without a state dict of tensors.*'epoch', 'notes'"):
        load_module(path, factory="torch.nn:Identity")


def test_weights_without_factory_ask_for_one(user_module) -> None:  # noqa: ANN001
    name, folder = user_module
    path = folder / "ckpt.pt"
    torch.save({"model_state_dict": _trained(name, folder).state_dict()}, path)
    with pytest.raises(ModelError, match="under 'model_state_dict'.*factory: package.module:Class"):
        load_module(path)


def test_trusted_whole_model_pickle_finds_its_class_beside_the_recipe(user_module, tmp_path: Path) -> None:  # noqa: ANN001
    name, folder = user_module
    net = _trained(name, folder)
    torch.save(net, folder / "whole.pt")
    x = torch.randn(3, 5)
    with torch.no_grad():
        expected = net(x)
    torch.save(x, folder / "x.pt")
    torch.save(expected, folder / "y.pt")
    # a fresh interpreter, started elsewhere: only the recipe folder (base_dir) makes the class importable
    code = (
        "import sys, torch; from pathlib import Path; from aeinterp.models.loading import load_module;"
        f"f = Path({str(folder)!r}); m = load_module(f / 'whole.pt', trust=True, base_dir=f);"
        "x = torch.load(f / 'x.pt'); y = torch.load(f / 'y.pt');"
        "torch.testing.assert_close(m(x), y, rtol=0, atol=0); print('same')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path.parent)
    assert out.returncode == 0 and "same" in out.stdout, out.stderr
    code_without = code.replace("base_dir=f", "base_dir=None")
    out = subprocess.run([sys.executable, "-c", code_without], capture_output=True, text=True, cwd=tmp_path.parent)
    assert out.returncode != 0 and "needs the class it was saved from to be importable" in out.stderr
    # untrusted, it is refused without unpickling anything
    with pytest.raises(ModelError, match="pickled Python objects"):
        load_module(folder / "whole.pt", base_dir=folder)


def test_recipe_loads_a_tutorial_checkpoint_end_to_end(user_module) -> None:  # noqa: ANN001
    from aeinterp import Runner

    name, folder = user_module
    torch.save({"model_state_dict": _trained(name, folder).state_dict(), "optimizer_state_dict": {}}, folder / "ckpt.pt")
    torch.manual_seed(1)
    import numpy as np

    np.save(folder / "x.npy", np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32))
    (folder / "r.yaml").write_text(
        f"data: {{path: x.npy}}\nmodel: {{path: ckpt.pt, factory: '{name}:Net'}}\nexplainers: [{{name: permutation, params: {{repeats: 1}}}}]\noutput: out\n"
    )
    outcome = Runner(quiet=True).run_file(folder / "r.yaml")
    assert outcome.ok and outcome.explanations["permutation"].importance.shape == (2, 5)
