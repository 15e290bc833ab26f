"""Architectures and a listable registry. Knows nothing of NoNN, students or partitions.

``create_model(name, num_classes=..., in_channels=...)`` builds one; ``list_models("wrn-16-*")`` or
``list_models(family="wrn")`` lists names; ``register_model`` and ``register_model_family`` add a user's own.
"""

from .hooks import FeatureHook, get_module, probe_feature_shape
from .mobilenetv2 import MobileNetV2
from .registry import (
    ModelFamily,
    create_model,
    family_names,
    list_families,
    list_models,
    register_model,
    register_model_family,
    validate_name,
)
from .wrn import WideResNet

__all__ = ["FeatureHook", "MobileNetV2", "ModelFamily", "WideResNet", "create_model", "family_names", "get_module",
           "list_families", "list_models", "probe_feature_shape", "register_model", "register_model_family",
           "validate_name"]
