"""Architectures and a registry. Knows nothing of NoNN, students or partitions."""

from .hooks import FeatureHook, get_module, probe_feature_shape
from .mobilenetv2 import MobileNetV2
from .registry import create_model, family_names, register_family, validate_name
from .wrn import WideResNet

__all__ = ["FeatureHook", "MobileNetV2", "WideResNet", "create_model", "family_names", "get_module", "probe_feature_shape",
           "register_family", "validate_name"]
