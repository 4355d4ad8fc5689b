"""Built-in autoencoder architectures, small enough to train in seconds on a CPU.

``mlp``     tabular ``(N, D)``: Linear-activation stacks.
``conv2d``  images ``(N, C, H, W)``: strided convolutions.
``conv1d``  sequences ``(N, T, F)``: strided 1-D convolutions over time.
``lstm``    sequences ``(N, T, F)``: "F features x T steps -> k -> F x T".
``supervised_vae``  tabular or image: a VAE whose first ``task_dims`` latent
            dims also feed a classifier head (Nguyen & Rodriguez Martinez,
            arXiv 2007.07591); the other dims are nuisance dims.

Every architecture has ``encode`` / ``decode`` methods, and ``variational=True``
turns it into a VAE whose ``encode`` returns ``(mu, logvar)``; the Model
adapter explains the mean. Models are saved as a checkpoint dict (architecture
name, config, state dict) that loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError

__all__ = ["ARCHITECTURES", "build_architecture", "BuiltinAutoencoder", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "aeinterp-builtin-v1"

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ModelError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None


class BuiltinAutoencoder(nn.Module):
    """Shared behaviour: an encoder body, a (mu[, logvar]) head, a decoder."""

    architecture: str = ""
    # set by each subclass: the encoder body (x -> features), the code head(s), the decoder (z -> x_hat)
    encoder: nn.Module
    to_code: nn.Module
    to_mu: nn.Module
    to_logvar: nn.Module
    decoder: nn.Module

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self.variational = bool(config.get("variational", False))

    # subclasses set self.encoder (x -> features), self.to_code, self.decoder (z -> x_hat)
    def encode(self, x: torch.Tensor) -> Any:
        h = self.encoder(x)
        if self.variational:
            return self.to_mu(h), self.to_logvar(h)
        return self.to_code(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def aeinterp_first_layer(self, func: Any) -> Any:
        """How :mod:`aeinterp.toolkit.first_layer` splits ``encode`` (only the one defined here; None for an override)."""
        from ..toolkit.first_layer import split_builtin

        return split_builtin(self) if func is BuiltinAutoencoder.encode else None

    def forward(self, x: torch.Tensor) -> Any:
        if not self.variational:
            return self.decode(self.encode(x))
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu, logvar

    def _heads(self, width: int, latent_dim: int) -> None:
        if self.variational:
            self.to_mu = nn.Linear(width, latent_dim)
            self.to_logvar = nn.Linear(width, latent_dim)
        else:
            self.to_code = nn.Linear(width, latent_dim)

    def checkpoint(self) -> dict[str, Any]:
        """A ``weights_only``-loadable dict that rebuilds this model."""
        return {"format": CHECKPOINT_FORMAT, "architecture": self.architecture, "config": self.config, "state_dict": self.state_dict()}


class MLPAutoencoder(BuiltinAutoencoder):
    architecture = "mlp"

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        variational: bool = False,
    ) -> None:
        super().__init__(
            {
                "input_shape": list(input_shape),
                "latent_dim": latent_dim,
                "hidden": list(hidden),
                "activation": activation,
                "variational": variational,
            }
        )
        if len(input_shape) != 1:
            raise ModelError(f"the mlp architecture needs tabular samples (D,), got {tuple(input_shape)}")
        d = int(input_shape[0])
        layers: list[nn.Module] = []
        width = d
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            width = h
        self.encoder = nn.Sequential(*layers) if layers else nn.Identity()
        self._heads(width, latent_dim)
        dec: list[nn.Module] = []
        width = latent_dim
        for h in reversed(list(hidden)):
            dec += [nn.Linear(width, h), _activation(activation)]
            width = h
        dec.append(nn.Linear(width, d))
        self.decoder = nn.Sequential(*dec)


class _Unflatten(nn.Module):
    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = list(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[0]] + self.shape)


class _Resize(nn.Module):
    """Crop or pad the trailing spatial dims to ``size`` (transposed convs may overshoot)."""

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        self.size = list(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.size) == 1:
            return F.interpolate(x, size=self.size[0], mode="linear", align_corners=False) if x.shape[-1] != self.size[0] else x
        if list(x.shape[-2:]) != self.size:
            return F.interpolate(x, size=(self.size[0], self.size[1]), mode="bilinear", align_corners=False)
        return x


class _Transpose(nn.Module):
    """(N, T, F) <-> (N, F, T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def _downsampling(conv: type[nn.Module], width: int, channels: Sequence[int], activation: str) -> list[nn.Module]:
    """Stride-2 convolutions, each halving the length (rounding up), with activations."""
    layers: list[nn.Module] = []
    for ch in channels:
        layers += [conv(width, ch, 3, stride=2, padding=1), _activation(activation)]
        width = ch
    return layers


def _upsampling(deconv: type[nn.Module], channels: Sequence[int], out_channels: int, activation: str) -> list[nn.Module]:
    """Stride-2 transposed convolutions mirroring :func:`_downsampling`, ending at ``out_channels``."""
    rev = list(reversed(list(channels)))
    layers: list[nn.Module] = []
    for i, ch in enumerate(rev):
        last = i + 1 == len(rev)
        layers.append(deconv(ch, out_channels if last else rev[i + 1], 4, stride=2, padding=1))
        if not last:
            layers.append(_activation(activation))
    return layers


def _halved(size: int, times: int) -> int:
    """``size`` after ``times`` stride-2 convolutions (each rounds up)."""
    return math.ceil(size / 2**times)


class ConvAutoencoder2d(BuiltinAutoencoder):
    architecture = "conv2d"

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        channels: Sequence[int] = (16, 32),
        activation: str = "relu",
        variational: bool = False,
    ) -> None:
        super().__init__(
            {
                "input_shape": list(input_shape),
                "latent_dim": latent_dim,
                "channels": list(channels),
                "activation": activation,
                "variational": variational,
            }
        )
        if len(input_shape) != 3:
            raise ModelError(f"the conv2d architecture needs image samples (C, H, W), got {tuple(input_shape)}")
        c, h, w = (int(s) for s in input_shape)
        width, hh, ww = (channels[-1] if channels else c), _halved(h, len(channels)), _halved(w, len(channels))
        flat = width * hh * ww
        self.encoder = nn.Sequential(*_downsampling(nn.Conv2d, c, channels, activation), nn.Flatten())
        self._heads(flat, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat),
            _activation(activation),
            _Unflatten([width, hh, ww]),
            *_upsampling(nn.ConvTranspose2d, channels, c, activation),
            _Resize([h, w]),
        )


class ConvAutoencoder1d(BuiltinAutoencoder):
    architecture = "conv1d"

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        channels: Sequence[int] = (16, 32),
        activation: str = "relu",
        variational: bool = False,
    ) -> None:
        super().__init__(
            {
                "input_shape": list(input_shape),
                "latent_dim": latent_dim,
                "channels": list(channels),
                "activation": activation,
                "variational": variational,
            }
        )
        if len(input_shape) != 2:
            raise ModelError(f"the conv1d architecture needs sequence samples (T, F), got {tuple(input_shape)}")
        t, f = (int(s) for s in input_shape)
        width, tt = (channels[-1] if channels else f), _halved(t, len(channels))
        flat = width * tt
        self.encoder = nn.Sequential(_Transpose(), *_downsampling(nn.Conv1d, f, channels, activation), nn.Flatten())
        self._heads(flat, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat),
            _activation(activation),
            _Unflatten([width, tt]),
            *_upsampling(nn.ConvTranspose1d, channels, f, activation),
            _Resize([t]),
            _Transpose(),
        )


class _LSTMEncoder(nn.Module):
    def __init__(self, features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        return h[-1]


class _LSTMDecoder(nn.Module):
    def __init__(self, latent_dim: int, hidden: int, layers: int, steps: int, features: int) -> None:
        super().__init__()
        self.steps = steps
        self.expand = nn.Linear(latent_dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.expand(z)).unsqueeze(1).expand(-1, self.steps, -1).contiguous()
        y, _ = self.lstm(h)
        return self.out(y)


class LSTMAutoencoder(BuiltinAutoencoder):
    """Sequence autoencoder: F features x T steps -> latent k -> F x T."""

    architecture = "lstm"

    def __init__(self, input_shape: Sequence[int], latent_dim: int, hidden: int = 32, layers: int = 1, variational: bool = False) -> None:
        super().__init__(
            {"input_shape": list(input_shape), "latent_dim": latent_dim, "hidden": hidden, "layers": layers, "variational": variational}
        )
        if len(input_shape) != 2:
            raise ModelError(f"the lstm architecture needs sequence samples (T, F), got {tuple(input_shape)}")
        t, f = (int(s) for s in input_shape)
        self.encoder = _LSTMEncoder(f, hidden, layers)
        self._heads(hidden, latent_dim)
        self.decoder = _LSTMDecoder(latent_dim, hidden, layers, t, f)


class SupervisedVAE(BuiltinAutoencoder):
    """VAE with latent ``z = [task | nuisance]``; a classifier head reads only the task dims.

    ``forward`` returns ``(x_hat, mu, logvar, logits)``; trained with
    reconstruction + beta * KL + alpha * cross-entropy (:mod:`aeinterp.models.training`).
    The backbone is the ``mlp`` (tabular) or ``conv2d`` (image) architecture.

    ``cycle`` (default 0: off; the digits recipe uses 1) adds the invariance the model is
    meant to have to its training: in training mode ``forward`` also decodes
    each sample's task code with nuisance dims drawn from the prior, encodes
    that again and classifies it, returning those logits fifth; the trainer
    adds ``alpha * cycle`` times their cross-entropy with the sample's label
    (a cycle-consistency term, as in Jha et al., ECCV 2018).
    """

    architecture = "supervised_vae"
    supervised = True

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        task_dims: int = 2,
        n_classes: int = 2,
        hidden: Sequence[int] = (64,),
        channels: Sequence[int] = (16, 32),
        activation: str = "relu",
        head_hidden: int = 32,
        cycle: float = 0.0,
    ) -> None:
        super().__init__(
            {
                "input_shape": list(input_shape),
                "latent_dim": latent_dim,
                "task_dims": task_dims,
                "n_classes": n_classes,
                "hidden": list(hidden),
                "channels": list(channels),
                "activation": activation,
                "head_hidden": head_hidden,
                "cycle": float(cycle),
            }
        )
        if cycle < 0:
            raise ModelError(f"cycle must be >= 0, got {cycle}")
        self.cycle_weight = float(cycle)
        if not 1 <= task_dims < latent_dim:
            raise ModelError(f"task_dims must be between 1 and latent_dim - 1 = {latent_dim - 1}, got {task_dims}")
        if n_classes < 2:
            raise ModelError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.variational = True
        if len(input_shape) == 1:
            self.vae: BuiltinAutoencoder = MLPAutoencoder(input_shape, latent_dim, hidden, activation, variational=True)
        elif len(input_shape) == 3:
            self.vae = ConvAutoencoder2d(input_shape, latent_dim, channels, activation, variational=True)
        else:
            raise ModelError(f"supervised_vae supports tabular (D,) or image (C, H, W) samples, got {tuple(input_shape)}")
        self.n_task = int(task_dims)
        self.head = nn.Sequential(nn.Linear(task_dims, head_hidden), _activation(activation), nn.Linear(head_hidden, n_classes))

    @property
    def task_dims(self) -> list[int]:
        return list(range(self.n_task))

    def encode(self, x: torch.Tensor) -> Any:
        return self.vae.encode(x)

    def aeinterp_first_layer(self, func: Any) -> Any:
        """``encode`` delegates to the MLP VAE, which splits as any built-in does."""
        from ..toolkit.first_layer import split_method

        return split_method(self.vae.encode) if func is SupervisedVAE.encode else None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits from full codes (reads only the task dims)."""
        return self.head(z[:, : self.n_task])

    def forward(self, x: torch.Tensor) -> Any:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        out = (self.decode(z), mu, logvar, self.classify(z))
        if not (self.training and self.cycle_weight > 0):
            return out
        redrawn = torch.cat([z[:, : self.n_task], torch.randn_like(z[:, self.n_task :])], dim=1)
        again, _ = self.encode(self.decode(redrawn))
        return (*out, self.classify(again))


ARCHITECTURES: dict[str, type[BuiltinAutoencoder]] = {
    "mlp": MLPAutoencoder,
    "conv2d": ConvAutoencoder2d,
    "conv1d": ConvAutoencoder1d,
    "lstm": LSTMAutoencoder,
    "supervised_vae": SupervisedVAE,
}

DEFAULT_FOR_KIND = {"tabular": "mlp", "image": "conv2d", "sequence": "lstm"}


def build_architecture(name: str, input_shape: Sequence[int], latent_dim: int, **options: Any) -> BuiltinAutoencoder:
    """Instantiate a built-in architecture; unknown names or options are a :class:`ModelError`."""
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(ARCHITECTURES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"unknown architecture {name!r}{hint} (choose one of {', '.join(ARCHITECTURES)})") from None
    if int(latent_dim) < 1:
        raise ModelError(f"latent_dim must be >= 1, got {latent_dim}")
    try:
        return cls(list(input_shape), int(latent_dim), **options)  # type: ignore[arg-type, call-arg]
    except TypeError as exc:
        raise ModelError(f"bad options for architecture {name!r}: {exc}") from None


def from_checkpoint(checkpoint: dict[str, Any]) -> BuiltinAutoencoder:
    """Rebuild a built-in model from :meth:`BuiltinAutoencoder.checkpoint` output."""
    config = dict(checkpoint["config"])
    shape, latent = config.pop("input_shape"), config.pop("latent_dim")
    module = build_architecture(checkpoint["architecture"], shape, latent, **config)
    module.load_state_dict(checkpoint["state_dict"])
    return module
