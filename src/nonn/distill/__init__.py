"""Knowledge distillation for NoNN: loss terms, the student assembly, and the training modules."""

from .losses import at_distance, attention_map, kd_loss, pooled_at_loss, spatial_at_loss
from .nonn_model import NoNN, StudentNode, build_nonn

__all__ = ["NoNN", "StudentNode", "at_distance", "attention_map", "build_nonn", "kd_loss", "pooled_at_loss",
           "spatial_at_loss"]
