"""Untrained models straight from architectures, for "what would this budget give me?" before any training, and
what every benchmark of them says about itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..budget import balanced_sizes
from ..distill.nonn_model import NoNN, build_nonn
from ..errors import ConfigError
from ..models import create_model, probe_feature_shape

BENCH_FORMAT = 1  # of bench.json and bench_edge.json
UNTRAINED_NOTE = ("UNTRAINED weights: memory, latency, throughput, bytes and energy are real; predictions and "
                  "accuracy are meaningless")
UNTRAINED_CLASSES = 10  # unless told otherwise
UNTRAINED_MEAN, UNTRAINED_STD = 0.5, 0.25  # the normalisation untrained models are exported with


@dataclass
class SyntheticModels:
    teacher: nn.Module
    nonn: NoNN
    input_shape: tuple[int, int, int]
    teacher_arch: str
    student_archs: list[str]
    feature_shape: tuple[int, int, int]
    num_classes: int = UNTRAINED_CLASSES

    @property
    def mean(self) -> tuple[float, ...]:
        return (UNTRAINED_MEAN,) * self.input_shape[0]

    @property
    def std(self) -> tuple[float, ...]:
        return (UNTRAINED_STD,) * self.input_shape[0]

    @property
    def classes(self) -> list[str]:
        """Class names for the export: "0", "1", ..."""
        return [str(i) for i in range(self.num_classes)]


def parse_input(text) -> tuple[int, int, int]:
    """"3x32x32" (or a sequence of three ints) -> (C, H, W); ConfigError naming the form otherwise."""
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    try:
        shape = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--input must be CxHxW with positive integers, like 3x32x32; got {text!r}")
    return shape


def untrained_models(teacher_arch: str, student_arch: str, k: int, input_shape: tuple[int, int, int], *,
                     num_classes: int = UNTRAINED_CLASSES, feature_module: str = "act",
                     seed: int = 0) -> SyntheticModels:
    """A teacher and a K-student NoNN with untrained (seeded) weights and balanced partition sizes."""
    torch.manual_seed(seed)
    teacher = create_model(teacher_arch, num_classes=num_classes, in_channels=input_shape[0]).eval()
    feature_shape = probe_feature_shape(teacher, feature_module, input_shape)
    sizes = balanced_sizes(feature_shape[0], k)
    net = build_nonn(lambda _k: create_model(student_arch, num_classes=num_classes, in_channels=input_shape[0]),
                     sizes, num_classes, feature_shape[1:]).eval()
    return SyntheticModels(teacher, net, tuple(input_shape), teacher_arch, [student_arch] * k, feature_shape,
                           num_classes)


def export_untrained(teacher_arch: str, student_arch: str, k: int, input_shape, out: str | Path, *, log=print,
                     save_teacher: bool = True) -> dict:
    """Untrained students and head exported to OUT/onnx (manifest.json and all), as `nonn bench-edge` and the soak
    serve them; with `save_teacher`, the teacher's state_dict also goes to OUT/teacher_untrained.pt. Returns the
    parameter counts, partition sizes and the teacher's feature shape."""
    from ..export import export_nonn
    from ..models.cost import count_params
    from ..rundir import save_checkpoint

    input_shape, out = parse_input(input_shape), Path(out)
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    models = untrained_models(teacher_arch, student_arch, k, input_shape)
    export_nonn(models.nonn, out / "onnx", input_shape=input_shape, mean=models.mean, std=models.std,
                classes=models.classes, archs=models.student_archs, log=log,
                source={"untrained": True, "teacher_arch": teacher_arch, "student_arch": student_arch, "seed": 0})
    if save_teacher:
        save_checkpoint(out / "teacher_untrained.pt", {"state_dict": models.teacher.state_dict(),
                                                        "arch": teacher_arch, "num_classes": models.num_classes,
                                                        "in_channels": input_shape[0]})
    return {"teacher_params": count_params(models.teacher),
            "student_params": [count_params(s) for s in models.nonn.students],
            "head_params": count_params(models.nonn.head), "partition_sizes": list(models.nonn.partition_sizes),
            "teacher_feature_shape": list(models.feature_shape)}
