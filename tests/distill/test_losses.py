import math

import torch
import torch.nn.functional as F

from nonn.distill import (
    NoNN,
    StudentNode,
    attention_map,
    kd_loss,
    pooled_at_loss,
    spatial_at_loss,
)
from nonn.models import create_model


def test_kd_loss_matches_formula():
    torch.manual_seed(0)
    zs, zt, T = torch.randn(5, 4), torch.randn(5, 4), 3.0
    ps, pt = F.softmax(zs / T, 1), F.softmax(zt / T, 1)
    expected = T * T * (pt * (pt.log() - ps.log())).sum(1).mean()
    assert torch.allclose(kd_loss(zs, zt, T), expected, atol=1e-6)
    assert kd_loss(zt, zt, T).abs() < 1e-6


def test_attention_map_is_channel_mean_of_squares():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # N=1, C=2, H=1, W=2
    assert torch.allclose(attention_map(f), torch.tensor([[(1 + 9) / 2, (4 + 0) / 2]]))


def test_spatial_at_loss_by_hand():
    # One student map with attention (1, 0) and teacher channel with attention (0, 1): orthogonal unit vectors,
    # distance² = 2. A second student matching its teacher channels contributes 0.
    s0 = torch.tensor([[[[1.0, 0.0]]]])
    s1 = torch.tensor([[[[2.0, 3.0]]]])
    t = torch.tensor([[[[0.0, 5.0]], [[4.0, 6.0]]]])
    groups = [torch.tensor([0]), torch.tensor([1])]
    assert math.isclose(float(spatial_at_loss([s0, s1], t, groups)), 2.0, abs_tol=1e-6)
    # Scale invariance: the maps are normalised.
    assert math.isclose(float(spatial_at_loss([10 * s0, s1], t, groups)), 2.0, abs_tol=1e-6)


def test_pooled_at_loss_uses_partition_order():
    t = torch.zeros(1, 3, 1, 1)
    t[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
    order = torch.tensor([2, 0, 1])
    student = torch.tensor([[3.0, 1.0, 2.0]])  # already in partition order
    assert float(pooled_at_loss(student, t, order)) < 1e-10
    assert float(pooled_at_loss(student, t, torch.tensor([0, 1, 2]))) > 0.01


def test_nonn_concatenates_in_partition_order_and_drops_students():
    torch.manual_seed(0)
    sizes = [3, 5]
    students = [StudentNode(create_model("wrn-10-1", num_classes=2, in_channels=1), n, (2, 2)) for n in sizes]
    net = NoNN(students, num_classes=4).eval()
    x = torch.randn(6, 1, 8, 8)
    logits, maps = net(x, return_maps=True)
    assert [m.shape for m in maps] == [(6, 3, 2, 2), (6, 5, 2, 2)]
    pooled = torch.cat([s(x) for s in net.students], 1)
    assert torch.allclose(logits, net.head(pooled), atol=1e-6)
    dropped = net(x, keep=torch.tensor([1.0, 0.0]))
    expected = net.head(torch.cat([net.students[0](x), torch.zeros(6, 5)], 1))
    assert torch.allclose(dropped, expected, atol=1e-6)


def test_bridge_resizes_to_teacher_map():
    node = StudentNode(create_model("wrn-10-1", num_classes=2, in_channels=3), 7, (4, 4))
    assert node.feature_map(torch.randn(2, 3, 32, 32)).shape == (2, 7, 4, 4)


def test_student_dropout_acts_in_training_only():
    torch.manual_seed(0)
    students = [StudentNode(create_model("wrn-10-1", num_classes=2, in_channels=1), n, (2, 2)) for n in (3, 5)]
    net = NoNN(students, num_classes=4, drop_prob=1.0)
    x = torch.randn(6, 1, 8, 8)
    net.eval()
    full = net(x)
    assert torch.equal(full, net(x))
    net.drop_prob = 0.0
    assert torch.equal(full, net(x))  # eval output does not depend on drop_prob
    # In training (BN frozen so only the dropout differs), one student's features are zeroed every batch.
    net.drop_prob = 1.0
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        pooled = [s(x) for s in net.students]
        dropped = net(x)
        options = [net.head(torch.cat([torch.zeros_like(pooled[0]), pooled[1]], 1)),
                   net.head(torch.cat([pooled[0], torch.zeros_like(pooled[1])], 1))]
    assert any(torch.allclose(dropped, o, atol=1e-6) for o in options)
    assert not torch.allclose(dropped, net.head(torch.cat(pooled, 1)), atol=1e-6)
