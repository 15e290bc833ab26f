"""Take a model's intermediate feature map by module path with a forward hook; the model is not edited."""

from __future__ import annotations

import difflib

import torch
from torch import nn

from ..errors import ModelError


def get_module(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)`` with an error that names close matches."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(path, names, n=3) or names[-3:]
        raise ModelError(f"module path '{path}' is not in the teacher; set teacher.feature_module to one of e.g. "
                         f"{', '.join(close)}") from None


class FeatureHook:
    """Record the output of the module at ``path`` on every forward; use as a context manager."""

    def __init__(self, model: nn.Module, path: str):
        self.module = get_module(model, path)
        self.output: torch.Tensor | None = None
        self._handle = self.module.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ModelError("the teacher's feature module must output an N x C x H x W tensor; "
                             "set teacher.feature_module to a convolutional block")
        self.output = output

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self) -> "FeatureHook":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


@torch.no_grad()
def probe_feature_shape(model: nn.Module, path: str, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """C, H, W of the feature map at ``path`` for one input of ``input_shape``."""
    was_training = model.training
    model.eval()
    with FeatureHook(model, path) as hook:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return tuple(hook.output.shape[1:])
