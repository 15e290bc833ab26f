"""A listable model registry: ``create_model("wrn-16-1", num_classes=10, in_channels=3)``, ``list_models("wrn-16-*")``.

A name is one of:

- ``<family>-<parameters>`` of a registered family (``wrn-16-1``, ``mbv2-0.35-d2``): the family's ``parse`` turns
  the text after ``<family>-`` into keyword arguments of its ``build``; ``sizes`` are the names it enumerates for
  ``list_models`` (the ones the budget search ranks);
- a single model registered with ``register_model(name, factory)``;
- ``package.module:factory`` for a user's own model, imported on use.

Every factory takes ``num_classes`` and ``in_channels`` keyword arguments. Registrations live in this process only.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

from ..errors import ModelError
from . import mobilenetv2, wrn

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelFamily:
    """Architectures named ``<name>-<parameters>``: ``parse(parameters) -> build kwargs`` (ValueError if malformed)."""

    name: str
    build: Factory
    parse: Callable[[str], dict]
    sizes: tuple[str, ...]
    example: str


_FAMILIES: dict[str, ModelFamily] = {}
_MODELS: dict[str, Factory] = {}


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip() or ":" in name:
        raise ModelError(f"a {what} name must be a non-empty string without spaces around it or ':', got {name!r}; "
                         "use e.g. 'my-net'")
    return name


def register_model_family(name: str, build: Factory, parse: Callable[[str], dict], *, sizes: Iterable[str] = (),
                          example: str | None = None, replace: bool = False) -> ModelFamily:
    """Register the family ``name``: ``<name>-<p>`` builds ``build(**parse(p), num_classes=..., in_channels=...)``.

    ``parse`` raises ValueError when ``p`` is malformed; ``build`` raises ValueError when the parameters are out of
    range. ``sizes`` are the family's enumerated names (in order) that ``list_models(family=name)`` returns;
    ``example`` shows a few names in error messages (default: the first sizes). ``replace=True`` replaces a family
    of the same name.
    """
    _check_name(name, "model family")
    if "-" in name:
        raise ModelError(f"a model family name cannot contain '-' (it separates the parameters), got '{name}'")
    if not callable(build) or not callable(parse):
        raise ModelError(f"model family '{name}' needs callable build and parse functions")
    if name in _FAMILIES and not replace:
        raise ModelError(f"model family '{name}' is already registered; choose another name or pass replace=True")
    sizes = tuple(sizes)
    family = ModelFamily(name, build, parse, sizes, example or ", ".join(sizes[:3]) or f"{name}-<parameters>")
    for size in sizes:
        if _family_of(size) != name or _parse(family, size) is None:
            raise ModelError(f"model family '{name}' lists '{size}', which its parse does not accept; "
                             f"list names of the form {name}-<parameters> that parse reads")
    _FAMILIES[name] = family
    return family


def register_model(name: str, factory: Factory, *, replace: bool = False) -> None:
    """Register one architecture under ``name``; ``factory(num_classes=..., in_channels=..., **kwargs)`` builds it.

    ``replace=True`` replaces a model registered under the same name. A name that a family already reads (e.g.
    ``wrn-16-1``) cannot be taken.
    """
    _check_name(name, "model")
    if not callable(factory):
        raise ModelError(f"model '{name}' needs a callable factory(num_classes=..., in_channels=...), "
                         f"got {factory!r}")
    if name in _MODELS and not replace:
        raise ModelError(f"model '{name}' is already registered; choose another name or pass replace=True")
    family = _FAMILIES.get(_family_of(name))
    if family is not None and _parse(family, name) is not None:
        raise ModelError(f"'{name}' is already a {family.name} architecture; register your model under another name")
    _MODELS[name] = factory


def list_models(pattern: str | None = None, *, family: str | None = None) -> list[str]:
    """Registered architecture names matching the shell-style ``pattern`` (``"wrn-16-*"``), optionally of one family.

    Families come in registration order, each with its sizes in its own order, then single models in registration
    order. ``family`` must be a registered family name.
    """
    if family is not None:
        if family not in _FAMILIES:
            raise ModelError(f"unknown model family '{family}'; use one of: {', '.join(_FAMILIES)}")
        names = list(_FAMILIES[family].sizes)
    else:
        names = [s for f in _FAMILIES.values() for s in f.sizes] + list(_MODELS)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def list_families() -> list[str]:
    """Registered family names in registration order (``["wrn", "mbv2"]`` before any of a user's)."""
    return list(_FAMILIES)


def family_names() -> list[str]:
    """Registered family names, sorted."""
    return sorted(_FAMILIES)


def examples() -> str:
    """A few names of each family and the single models, for error messages."""
    return "; ".join([f.example for f in _FAMILIES.values()] + ([", ".join(_MODELS)] if _MODELS else []))


def _family_of(name: str) -> str:
    return name.partition("-")[0]


def _parse(family: ModelFamily, name: str) -> dict | None:
    """The build kwargs of ``name`` in ``family``, or None when its parameters are malformed."""
    try:
        return family.parse(name[len(family.name) + 1:])  # "wrn-16-1" -> "16-1"; "mbv2" -> ""
    except ValueError:
        return None


def _resolve(name: str) -> tuple[Factory, dict]:
    """The factory and its extra kwargs for a registered name, else a ModelError that lists names."""
    if isinstance(name, str):
        if name in _MODELS:
            return _MODELS[name], {}
        family = _FAMILIES.get(_family_of(name))
        if family is not None:
            kwargs = _parse(family, name)
            if kwargs is not None:
                return family.build, kwargs
    raise ModelError(f"unknown architecture '{name}'; use one of: {examples()} (or package.module:factory)")


def validate_name(name: str) -> None:
    """Raise ModelError unless ``name`` can be built (without building it)."""
    if isinstance(name, str) and ":" in name:
        return
    _resolve(name)


def _import_factory(name: str) -> Factory:
    module_name, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"cannot import model factory '{name}' ({e}); check the module path and name") from None


def create_model(name: str, *, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
    """Build an architecture by name (see the module docstring for the forms a name takes)."""
    if isinstance(name, str) and ":" in name:
        return _import_factory(name)(num_classes=num_classes, in_channels=in_channels, **kwargs)
    factory, params = _resolve(name)
    try:
        return factory(**params, num_classes=num_classes, in_channels=in_channels, **kwargs)
    except ValueError as e:
        raise ModelError(f"architecture '{name}': {e}") from None


register_model_family("wrn", wrn.WideResNet, wrn.parse_name, sizes=wrn.SIZES, example="wrn-16-1, wrn-40-4, wrn-16-0.5")
register_model_family("mbv2", mobilenetv2.MobileNetV2, mobilenetv2.parse_name, sizes=mobilenetv2.SIZES,
                      example="mbv2-1.0, mbv2-0.35-d2")
