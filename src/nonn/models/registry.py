"""A small model registry: ``create_model("wrn-16-1", num_classes=10, in_channels=3)``.

Names are families with parameters in them (``wrn-<depth>-<width>``), or ``package.module:factory`` for a
user's own model, whose factory takes ``num_classes`` and ``in_channels`` keyword arguments.
"""

from __future__ import annotations

import importlib
import re
from typing import Callable

from torch import nn

from ..errors import ModelError
from .wrn import WideResNet

_FAMILIES: dict[str, tuple[re.Pattern, Callable[..., nn.Module], str]] = {}


def register_family(name: str, pattern: str, build: Callable[..., nn.Module], example: str) -> None:
    """Register a family: ``pattern`` is a regex whose groups are passed, as ints, to ``build``."""
    _FAMILIES[name] = (re.compile(pattern), build, example)


def _wrn(depth: int, width: int, **kw) -> nn.Module:
    return WideResNet(depth=depth, width=width, **kw)


register_family("wrn", r"wrn-(\d+)-(\d+)", _wrn, "wrn-16-1, wrn-40-4")


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def examples() -> str:
    return "; ".join(ex for _, _, ex in _FAMILIES.values())


def validate_name(name: str) -> None:
    """Raise ModelError unless ``name`` can be built (without building it)."""
    if ":" in name:
        return
    for pattern, _, _ in _FAMILIES.values():
        if pattern.fullmatch(name):
            return
    raise ModelError(f"unknown architecture '{name}'; use one of: {examples()} (or package.module:factory)")


def create_model(name: str, *, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
    """Build an architecture by name."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ModelError(f"cannot import model factory '{name}' ({e}); check the module path and name") from None
        return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
    validate_name(name)
    for pattern, build, _ in _FAMILIES.values():
        m = pattern.fullmatch(name)
        if m:
            try:
                return build(*map(int, m.groups()), num_classes=num_classes, in_channels=in_channels, **kwargs)
            except ValueError as e:
                raise ModelError(f"architecture '{name}': {e}") from None
    raise AssertionError("unreachable")
