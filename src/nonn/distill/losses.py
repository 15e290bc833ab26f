"""NoNN loss terms, each a small function; the training module sums them with weights.

total = (1-alpha)·CE(z_s, y) + alpha·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (beta/2)·Σ_k ‖q_s^k/‖q_s^k‖ − q_t^k/‖q_t^k‖‖²
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), averaged over the batch."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def attention_map(feature_map: torch.Tensor) -> torch.Tensor:
    """Spatial attention of an N x C x H x W map: the channel mean of squared activations, flattened to N x HW."""
    return feature_map.pow(2).mean(dim=1).flatten(1)


def _unit(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return v / v.norm(dim=1, keepdim=True).clamp_min(eps)


def at_distance(student_q: torch.Tensor, teacher_q: torch.Tensor) -> torch.Tensor:
    """‖q_s/‖q_s‖ − q_t/‖q_t‖‖², summed over positions, averaged over the batch."""
    return (_unit(student_q) - _unit(teacher_q)).pow(2).sum(dim=1).mean()


def spatial_at_targets(teacher_map: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """The teacher's side of the spatial form: the attention map of channels P_k for each k, N x K x HW."""
    return torch.stack([attention_map(teacher_map.index_select(1, idx)) for idx in groups], dim=1)


def spatial_at_loss_to(student_maps: list[torch.Tensor], teacher_q: torch.Tensor) -> torch.Tensor:
    """Σ_k at_distance between student k's bridge output and the teacher's target k (N x K x HW), without beta/2."""
    if student_maps[0].shape[-2] * student_maps[0].shape[-1] != teacher_q.shape[-1]:
        raise ValueError("student and teacher maps must have the same spatial size")
    total = student_maps[0].new_zeros(())
    for k, s_map in enumerate(student_maps):
        total = total + at_distance(attention_map(s_map), teacher_q[:, k])
    return total


def spatial_at_loss(student_maps: list[torch.Tensor], teacher_map: torch.Tensor,
                    groups: list[torch.Tensor]) -> torch.Tensor:
    """Σ_k at_distance between student k's bridge output and the teacher's channels P_k (without beta/2)."""
    if student_maps[0].shape[-2:] != teacher_map.shape[-2:]:
        raise ValueError("student and teacher maps must have the same spatial size")
    return spatial_at_loss_to(student_maps, spatial_at_targets(teacher_map, groups))


def pooled_at_targets(teacher_map: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The teacher's side of the pooled form: its pooled channels in partition order, N x C."""
    return teacher_map.mean(dim=(2, 3)).index_select(1, order)


def pooled_at_loss(student_pooled: torch.Tensor, teacher_map: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The authors' joint variant: distance between the L2-normalised concatenated pooled vectors.

    ``order`` is the concatenation of the partition's groups, so teacher channels line up with students'.
    """
    return at_distance(student_pooled, pooled_at_targets(teacher_map, order))
