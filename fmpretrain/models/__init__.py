"""GNN backbone (equivariant transformer) and the fingerprint / property heads."""

from fmpretrain.models.config import (
    ModelConfig,
    build_backbone,
    build_fingerprint_model,
    build_property_model,
    count_parameters,
)
from fmpretrain.models.et import EquivariantTransformer, ExpNormalRBF
from fmpretrain.models.heads import FingerprintHead, FingerprintModel, PropertyHead, PropertyModel

__all__ = [
    "EquivariantTransformer",
    "ExpNormalRBF",
    "FingerprintHead",
    "FingerprintModel",
    "ModelConfig",
    "PropertyHead",
    "PropertyModel",
    "build_backbone",
    "build_fingerprint_model",
    "build_property_model",
    "count_parameters",
]
