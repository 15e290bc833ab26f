"""Architectures and a registry. Knows nothing of NoNN, students or partitions."""

from .hooks import FeatureHook, get_module, probe_feature_shape
from .registry import create_model, family_names, register_family, validate_name
from .wrn import WideResNet

__all__ = ["FeatureHook", "WideResNet", "create_model", "family_names", "get_module", "probe_feature_shape",
           "register_family", "validate_name"]
