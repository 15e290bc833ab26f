"""Layer-split baseline: cut one whole model into K consecutive ranges of its top-level layers.

This is how a model too large for one device is usually spread over several: device k runs
layers [start_k, end_k) and sends its activation map to device k+1, so an activation map
crosses the network at every cut. The cut points balance the weight memory per device
(minimise the largest piece; among equal maxima, the fewest bytes crossing the cuts).

Layers are the blocks a WRN or MobileNetV2 is built from: the stem, every residual block in
order, and the tail (final norm and activation, pooling, classifier). A one-student NoNN
(the "compressed model" baseline) is split the same way, its tail being the backbone's final
norm/activation, the bridge, the pooling and the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..models.cost import FLOAT32_BYTES, count_macs, count_params, tensor_bytes, weight_bytes


class _ClassifierTail(nn.Module):
    """Final features -> global average pool -> flatten -> (dropout) -> fc."""

    def __init__(self, features: nn.Module, fc: nn.Module, dropout: nn.Module | None = None):
        super().__init__()
        self.features = features
        self.dropout = dropout if dropout is not None else nn.Identity()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.fc(self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class _NoNNTail(nn.Module):
    """A one-student NoNN after the backbone's blocks: final features -> bridge -> pool -> head."""

    def __init__(self, features: nn.Module, student: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.bridge = student.bridge
        self.map_size = tuple(student.map_size)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if tuple(f.shape[-2:]) != self.map_size:
            f = F.adaptive_avg_pool2d(f, self.map_size)
        return self.head(self.bridge(f).mean(dim=(2, 3)))


def _backbone_parts(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], nn.Module]:
    """(stem and blocks in order, the module making the final feature map from the last block)."""
    names = {n for n, _ in model.named_children()}
    if {"stem", "group1", "group2", "group3", "norm", "act"} <= names:  # WideResNet
        body = [("stem", model.stem)]
        for group in ("group1", "group2", "group3"):
            body += [(f"{group}.{i}", block) for i, block in enumerate(getattr(model, group))]
        return body, nn.Sequential(model.norm, model.act)
    if {"stem", "blocks", "conv", "norm", "act"} <= names:  # MobileNetV2
        body = [("stem", model.stem)] + [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
        return body, nn.Sequential(model.conv, model.norm, model.act)
    raise ModelError(f"the layer-split baseline knows WRN and MobileNetV2 layers, not {type(model).__name__}; "
                     "use a wrn-* or mbv2-* architecture")


def top_level_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model as consecutive (name, module) layers whose composition is its forward pass.

    ``model`` is a WRN or MobileNetV2 classifier, or a NoNN with exactly one student.
    """
    students = getattr(model, "students", None)
    if students is not None:
        if len(students) != 1:
            raise ModelError(f"only a one-student NoNN is one model to split; this one has {len(students)}")
        student = students[0]
        body, features = _backbone_parts(student.backbone)
        return [*body, ("tail", _NoNNTail(features, student, model.head))]
    body, features = _backbone_parts(model)
    return [*body, ("tail", _ClassifierTail(features, model.fc, getattr(model, "dropout", None)))]


@dataclass
class LayerCost:
    """One top-level layer: its parameters, MACs and the activation it hands on (batch of one)."""

    name: str
    params: int
    macs: int
    out_shape: tuple[int, ...]

    @property
    def out_bytes(self) -> int:
        return tensor_bytes(self.out_shape)


@torch.no_grad()
def layer_costs(layers: list[tuple[str, nn.Module]], input_shape, dtype_bytes: int = FLOAT32_BYTES) -> list[LayerCost]:
    """Parameters, MACs and output shape of every layer, by running one zero image through them."""
    x = torch.zeros(1, *input_shape)
    costs = []
    for name, module in layers:
        macs = count_macs(module, x)  # in eval mode
        x = module(x)
        costs.append(LayerCost(name, count_params(module), macs, tuple(x.shape)))
    return costs


def balanced_ranges(weights: list[int], k: int, cut_bytes: list[int] | None = None) -> list[tuple[int, int]]:
    """``k`` consecutive non-empty ranges [start, end) of the layers minimising the largest range's weight;
    among those, the smallest total of ``cut_bytes[i]`` (bytes leaving layer i) over the cuts."""
    n = len(weights)
    if not 1 <= k <= n:
        raise ModelError(f"cannot split {n} layers into {k} pieces; use 1 <= K <= {n}")
    cut_bytes = cut_bytes or [0] * n
    prefix = [0]
    for w in weights:
        prefix.append(prefix[-1] + w)

    def solve(cost, combine, limit=math.inf):
        """best[j][i] over the first i layers in j pieces, each piece's weight at most ``limit``."""
        best = [[math.inf] * (n + 1) for _ in range(k + 1)]
        back = [[0] * (n + 1) for _ in range(k + 1)]
        best[0][0] = 0
        for j in range(1, k + 1):
            for i in range(j, n - (k - j) + 1):
                for c in range(j - 1, i):
                    if best[j - 1][c] == math.inf or prefix[i] - prefix[c] > limit:
                        continue
                    value = combine(best[j - 1][c], cost(c, i))
                    if value < best[j][i]:
                        best[j][i], back[j][i] = value, c
        return best, back

    # First the smallest possible largest piece, then the fewest bytes over cuts among splits that reach it.
    best, _ = solve(lambda c, i: prefix[i] - prefix[c], max)
    _, back = solve(lambda c, i: cut_bytes[c - 1] if c > 0 else 0, lambda a, b: a + b, limit=best[k][n])
    ranges, end = [], n
    for j in range(k, 0, -1):
        start = back[j][end]
        ranges.append((start, end))
        end = start
    return ranges[::-1]


@dataclass
class Piece:
    """Layers [start, end) of the model, run by one device."""

    index: int
    start: int
    end: int
    layers: list[str]
    params: int
    weight_bytes: int
    macs: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    file: str = ""
    onnx_bytes: int = 0

    @property
    def in_bytes(self) -> int:
        return tensor_bytes(self.in_shape)

    @property
    def out_bytes(self) -> int:
        return tensor_bytes(self.out_shape)

    def to_dict(self) -> dict:
        return {"index": self.index, "layers": [self.start, self.end], "layer_names": self.layers,
                "params": self.params, "weight_bytes": self.weight_bytes, "macs": self.macs,
                "in_shape": list(self.in_shape), "out_shape": list(self.out_shape), "in_bytes": self.in_bytes,
                "out_bytes": self.out_bytes, "file": self.file, "onnx_bytes": self.onnx_bytes}


@dataclass
class SplitPlan:
    """Where a model is cut for K devices, with what each piece holds and sends."""

    model_params: int
    layers: list[LayerCost]
    pieces: list[Piece]
    modules: list[nn.Module] = field(repr=False, default_factory=list)

    @property
    def split_points(self) -> list[int]:
        """Index of the first layer of every piece after the first."""
        return [p.start for p in self.pieces[1:]]

    @property
    def cut_bytes(self) -> list[int]:
        """Activation bytes (float32 payload, batch of one) crossing each cut."""
        return [p.out_bytes for p in self.pieces[:-1]]

    def to_dict(self) -> dict:
        return {"k": len(self.pieces), "model_params": self.model_params,
                "layers": [{"name": c.name, "params": c.params, "macs": c.macs, "out_shape": list(c.out_shape),
                            "out_bytes": c.out_bytes} for c in self.layers],
                "split_points": self.split_points,
                "split_after": [self.layers[s - 1].name for s in self.split_points],
                "cut_bytes": self.cut_bytes,
                "pieces": [p.to_dict() for p in self.pieces]}


def plan_split(model: nn.Module, input_shape, k: int, *, dtype_bytes: int = FLOAT32_BYTES) -> SplitPlan:
    """Cut ``model`` into ``k`` pieces of consecutive top-level layers with balanced weight memory."""
    model = model.eval()
    layers = top_level_layers(model)
    costs = layer_costs(layers, input_shape)
    ranges = balanced_ranges([c.params for c in costs], k, [c.out_bytes for c in costs])
    pieces, modules = [], []
    for index, (start, end) in enumerate(ranges):
        in_shape = (1, *input_shape) if start == 0 else costs[start - 1].out_shape
        params = sum(c.params for c in costs[start:end])
        pieces.append(Piece(index, start, end, [c.name for c in costs[start:end]], params,
                            weight_bytes(params, dtype_bytes),
                            sum(c.macs for c in costs[start:end]), tuple(in_shape), costs[end - 1].out_shape))
        modules.append(nn.Sequential(*(m for _, m in layers[start:end])).eval())
    return SplitPlan(count_params(model), costs, pieces, modules)


def export_split(plan: SplitPlan, out: Path, stem: str = "piece", log=print,
                 pixels: dict[str, str] | None = None) -> list[Path]:
    """Each piece to ``out/<stem>_<i>.onnx`` (input ``image`` or ``activation_in``, output ``activation_out`` or
    ``logits``, dynamic batch); records file names and sizes in the plan. ``pixels`` (a Normalisation's metadata)
    goes into piece 0, so its node also takes uint8 pixels, as NoNN's nodes do."""
    from .. import atomic
    from ..export import onnx_bytes

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    last = len(plan.pieces) - 1
    for piece, module in zip(plan.pieces, plan.modules):
        example = torch.zeros(2, *piece.in_shape[1:])
        data = onnx_bytes(module, example, "image" if piece.index == 0 else "activation_in",
                           "logits" if piece.index == last else "activation_out",
                           pixels if piece.index == 0 else None)
        path = out / f"{stem}_{piece.index}.onnx"
        atomic.write_bytes(path, data)
        piece.file, piece.onnx_bytes = path.name, len(data)
        paths.append(path)
        log(f"[bench] {path} ({len(data) / 1e3:.1f} kB, layers {piece.start}..{piece.end - 1})")
    return paths


def merge_pieces(files: list[Path], out: Path) -> Path:
    """One ONNX model that runs the pieces in order (each piece's output wired to the next one's input): the
    whole model for one device, without exporting it again."""
    import onnx
    from onnx import compose

    from .. import atomic

    merged = onnx.load(str(files[0]))
    first_metadata = [(p.key, p.value) for p in merged.metadata_props]  # piece 0's pixels: the merged model's
    for index, path in enumerate(files[1:], start=1):
        nxt = onnx.load(str(path))
        if index == 1:
            merged = compose.add_prefix(merged, "p0_")
        merged = compose.merge_models(merged, nxt, io_map=[(merged.graph.output[0].name, nxt.graph.input[0].name)],
                                      prefix2=f"p{index}_")
    for value, name in ((merged.graph.input[0], "image"), (merged.graph.output[0], "logits")):
        old = value.name
        for node in merged.graph.node:
            node.input[:] = [name if x == old else x for x in node.input]
            node.output[:] = [name if x == old else x for x in node.output]
        value.name = name
    del merged.metadata_props[:]
    for key, value in first_metadata:
        entry = merged.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(merged)
    atomic.write_bytes(out, merged.SerializeToString())
    return out


def run_chain(files: list[Path], x: np.ndarray) -> np.ndarray:
    """The pieces run in order with ONNX Runtime in this process (for parity checks)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    for path in files:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        x = session.run(None, {session.get_inputs()[0].name: x})[0]
    return x
