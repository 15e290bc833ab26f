"""A small model registry: ``create_model("wrn-16-1", num_classes=10, in_channels=3)``.

Names are families with parameters in them (``wrn-<depth>-<width>``, ``mbv2-<width>[-d<blocks per stage>]``),
or ``package.module:factory`` for a user's own model, whose factory takes ``num_classes`` and ``in_channels``
keyword arguments.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence

from torch import nn

from ..errors import ModelError
from .mobilenetv2 import MobileNetV2
from .wrn import WideResNet

Converters = tuple[Callable[[str], object], ...]
_FAMILIES: dict[str, tuple[re.Pattern, Callable[..., nn.Module], str, Converters | None]] = {}


def register_family(name: str, pattern: str, build: Callable[..., nn.Module], example: str,
                    types: Sequence[Callable[[str], object]] | None = None) -> None:
    """Register a family: ``pattern`` is a regex whose groups are passed to ``build``, converted by ``types``
    (one callable per group; default: all ints). A group that did not take part in the match is passed as None."""
    _FAMILIES[name] = (re.compile(pattern), build, example, None if types is None else tuple(types))


def _wrn(depth: int, width: float, **kw) -> nn.Module:
    return WideResNet(depth=depth, width=width, **kw)


def _width(text: str) -> float | int:
    """"4" -> 4, "0.5" -> 0.5: whole widths stay integers."""
    value = float(text)
    return int(value) if value.is_integer() else value


register_family("wrn", r"wrn-(\d+)-(\d+(?:\.\d+)?)", _wrn, "wrn-16-1, wrn-40-4, wrn-16-0.5", types=(int, _width))


def _mbv2(width: float, max_blocks: int | None, **kw) -> nn.Module:
    return MobileNetV2(width=width, max_blocks=max_blocks, **kw)


register_family("mbv2", r"mbv2-(\d+(?:\.\d+)?)(?:-d(\d+))?", _mbv2, "mbv2-1.0, mbv2-0.35-d2", types=(float, int))


def _convert(groups: tuple[str | None, ...], types: Converters | None) -> list:
    types = types or (int,) * len(groups)
    return [None if g is None else t(g) for g, t in zip(groups, types)]


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def examples() -> str:
    return "; ".join(ex for _, _, ex, _ in _FAMILIES.values())


def validate_name(name: str) -> None:
    """Raise ModelError unless ``name`` can be built (without building it)."""
    if ":" in name:
        return
    for pattern, _, _, _ in _FAMILIES.values():
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
    for pattern, build, _, types in _FAMILIES.values():
        m = pattern.fullmatch(name)
        if m:
            try:
                return build(*_convert(m.groups(), types), num_classes=num_classes, in_channels=in_channels,
                             **kwargs)
            except ValueError as e:
                raise ModelError(f"architecture '{name}': {e}") from None
    raise AssertionError("unreachable")
