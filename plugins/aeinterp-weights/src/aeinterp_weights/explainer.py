"""``weight_importance``: what an MLP encoder's weights alone say about every latent.

For an encoder that is a chain of ``nn.Linear`` layers and elementwise
activations, ``z = W_L act(... act(W_1 x + b_1) ...) + b_L``:

* **Olden** (connection weights, Olden & Jackson 2002): ``O = W_L ... W_2 W_1``
  ``(latents, inputs)``, signed; importance ``|O|`` (``|sum_{e in g} O_e|`` for a
  group).
* **Garson** (Garson 1991, as in NeuralNetTools for one hidden layer):
  each unit's input shares ``|W_l| / row sums`` propagated through the
  layers, the last layer weighted by ``|W_L|``; each latent's shares sum to 1,
  groups add their members' shares. For one hidden layer
  ``G_ki = sum_h |W2_kh| |W1_hi| / sum_i' |W1_hi'|``, normalised over ``i``.

All latents come out of one chain of matrix products. The mean |activation|
of every hidden unit on the explained samples is kept as an extra (dead
units show as zeros). Any other module in the encoder (convolutions, LSTMs,
normalisation, a custom ``forward``) is a :class:`aeinterp.CapabilityError`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from aeinterp import Capabilities, CapabilityError, Explainer, ExplainerParams, Explanation
from aeinterp.model import as_tensor, evaluate
from aeinterp.targets import Target, target_names_for
from aeinterp.toolkit.perturb import reduce_groups

__all__ = ["WeightImportance", "linear_chain", "garson", "olden"]

ELEMENTWISE = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Softplus,
    nn.Mish,
    nn.Hardtanh,
    nn.ReLU6,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Identity,
    nn.Dropout,
    nn.AlphaDropout,
)


def _flatten(module: nn.Module) -> list[nn.Module]:
    if type(module) is nn.Sequential:
        return [m for child in module for m in _flatten(child)]
    return [module]


def _encoder_modules(model: Any) -> list[nn.Module]:
    """The encoder as a flat list of modules, or a CapabilityError saying why it is not a chain.

    An ``encode`` method that is not a built-in one is read through the
    module's ``encoder`` submodule; :meth:`WeightImportance.check` verifies that
    the chain reproduces the code.
    """
    encoder = getattr(model, "encoder_fn", None)
    if isinstance(encoder, nn.Module):
        return _flatten(encoder)
    owner, func = getattr(encoder, "__self__", None), getattr(encoder, "__func__", None)
    from aeinterp.models.architectures import BuiltinAutoencoder, SupervisedVAE

    if isinstance(owner, SupervisedVAE) and func is SupervisedVAE.encode:
        owner, func = owner.vae, type(owner.vae).encode
    if isinstance(owner, BuiltinAutoencoder) and func is BuiltinAutoencoder.encode:
        head = owner.to_mu if owner.variational else owner.to_code
        return [*_flatten(owner.encoder), head]
    if isinstance(getattr(owner, "encoder", None), nn.Module):  # an encode method around an `encoder` submodule: checked numerically
        return _flatten(owner.encoder)
    raise CapabilityError(
        f"weight_importance needs an encoder made of nn.Linear layers and elementwise activations; "
        f"the encoder here is {type(owner or encoder).__name__}.{getattr(func, '__name__', 'encode')}, whose computation is not a known chain "
        "(pass the encoder as an nn.Sequential submodule with `encoder:` in the recipe's model section)",
        plugin="weight_importance",
    )


def linear_chain(model: Any) -> tuple[list[nn.Linear], list[nn.Module]]:
    """The encoder's Linear layers and the whole chain, checked; CapabilityError otherwise."""
    modules = [m for m in _encoder_modules(model) if not isinstance(m, nn.Flatten)]
    bad = [type(m).__name__ for m in modules if not isinstance(m, (nn.Linear, *ELEMENTWISE))]
    if bad:
        raise CapabilityError(
            f"weight_importance needs an encoder made of nn.Linear layers and elementwise activations; it has {', '.join(dict.fromkeys(bad))} "
            "(use gradient or perturbation explainers for convolutional or recurrent encoders)",
            plugin="weight_importance",
        )
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    if not linears:
        raise CapabilityError("weight_importance found no nn.Linear layer in the encoder", plugin="weight_importance")
    return linears, modules


def olden(weights: list[torch.Tensor]) -> torch.Tensor:
    """``W_L ... W_1``: ``(outputs, inputs)`` connection weights."""
    out = weights[0]
    for w in weights[1:]:
        out = w @ out
    return out


def garson(weights: list[torch.Tensor]) -> torch.Tensor:
    """``(outputs, inputs)`` Garson shares, each row summing to 1 (zero rows stay zero)."""
    shares = torch.eye(weights[0].shape[1], dtype=weights[0].dtype)
    for w in weights[:-1]:
        a = w.abs()
        shares = (a / a.sum(dim=1, keepdim=True).clamp_min(1e-30)) @ shares  # each unit's input shares
    g = weights[-1].abs() @ shares
    return g / g.sum(dim=1, keepdim=True).clamp_min(1e-30)


class WeightImportance(Explainer):
    """Garson's and Olden's weight-based importance of every latent of an MLP encoder, plus mean |activation| per hidden unit."""

    name = "weight_importance"

    class Params(ExplainerParams):
        method: Literal["olden", "garson"] = Field(
            "olden",
            description="which method gives `importance` (the other is kept in arrays): olden (|product of weights|) or garson (normalised |weight| shares)",
        )
        max_samples: int | None = Field(
            None, ge=1, description="samples for the mean |activation| of hidden units (default all of the explain split)"
        )

    capabilities = Capabilities(
        targets=frozenset({"latent"}), data_kinds=frozenset({"tabular"}), needs_gradients=False, deterministic=True, local=False
    )

    def check(self, model, data, target) -> None:  # noqa: ANN001
        super().check(model, data, target)
        linears, modules = linear_chain(model)
        if linears[0].in_features != int(np.prod(model.input_shape)):
            raise CapabilityError(
                f"the encoder's first Linear layer reads {linears[0].in_features} inputs, the samples have {int(np.prod(model.input_shape))}",
                plugin=self.name,
            )
        x = data.x_explain[:16]
        z_chain, _ = self._run_chain(modules, as_tensor(x, model).reshape(x.shape[0], -1))
        z_model = evaluate(model.encode, as_tensor(x, model), model=model)
        if z_chain.shape != z_model.shape or not torch.allclose(z_chain, z_model, rtol=1e-4, atol=1e-5):
            raise CapabilityError(
                "the encoder's modules, applied in order, do not reproduce its code (its encode does more than the chain); weight_importance cannot read it",
                plugin=self.name,
            )

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        target = Target(target)
        linears, modules = linear_chain(model)
        x = data.x_explain
        if self.params.max_samples is not None and x.shape[0] > self.params.max_samples:
            x = x[np.sort(rng.choice(x.shape[0], self.params.max_samples, replace=False))]
        xt = as_tensor(x, model).reshape(x.shape[0], -1)
        _, activations = self._run_chain(modules, xt)
        weights = [m.weight.detach().double().cpu() for m in linears]
        o = olden(weights)
        g = garson(weights)
        groups = data.groups
        olden_groups = reduce_groups(o, groups)  # signed sums, (latents, groups)
        garson_groups = reduce_groups(g, groups)
        importance = olden_groups.abs() if self.params.method == "olden" else garson_groups
        names = target_names_for(model, data, target)
        extras: dict[str, Any] = {
            "method": self.params.method,
            "layers": [[int(m.in_features), int(m.out_features)] for m in linears],
            "mean_abs_activation": {k: v.tolist() for k, v in activations.items()},
            "dead_units": {k: int((v <= 1e-8).sum()) for k, v in activations.items()},
            "unit": "olden: |sum over the group of (W_L ... W_1)|, in latent units per input unit; garson: share of each latent's |weights| (rows sum to 1)",
        }
        summary = [
            f"{k}: {int((v <= 1e-8).sum())} of {v.numel()} hidden units never active on these samples"
            for k, v in activations.items()
            if (v <= 1e-8).any()
        ]
        if summary:
            extras["summary"] = summary
        arrays = {"olden": olden_groups.numpy().astype(np.float32), "garson": garson_groups.numpy().astype(np.float32)}
        arrays.update({f"activation_{k}": v.numpy().astype(np.float32) for k, v in activations.items()})
        return Explanation(
            importance=importance.numpy(),
            feature_names=data.group_names,
            target_names=names,
            target=target.value,
            arrays=arrays,
            extras=extras,
        )

    @staticmethod
    def _run_chain(modules: list[nn.Module], x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The chain's output and the mean |output| of each activation module (hidden layer)."""
        acts: dict[str, torch.Tensor] = {}
        h = x
        with torch.no_grad():
            for i, m in enumerate(modules):
                h = m(h)
                if not isinstance(m, (nn.Linear, nn.Identity, nn.Dropout, nn.AlphaDropout)):
                    acts[f"layer{i}_{type(m).__name__.lower()}"] = h.abs().mean(dim=0).double().cpu()
        return h.cpu(), acts
