"""Seeing latents: ``feature_visualization``, ``activation_atlas``, ``latent_traversal``,
``component_contributions`` and ``output_effects``."""

from __future__ import annotations

from aeinterp import hookimpl

__version__ = "0.1.0"


@hookimpl
def aeinterp_register_explainers(registry):  # noqa: ANN001, ANN201 - hook signature
    from .atlas import ActivationAtlas
    from .feature_visualization import FeatureVisualization
    from .output_effects import OutputEffects
    from .traversal import ComponentContributions, LatentTraversal

    registry.add(FeatureVisualization)
    registry.add(ActivationAtlas)
    registry.add(LatentTraversal)
    registry.add(ComponentContributions)
    registry.add(OutputEffects)
