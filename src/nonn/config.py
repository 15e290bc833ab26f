"""Typed configuration: YAML in, every key validated, ``--set key=value`` overrides, every default written out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import ConfigError


@dataclass
class DataConfig:
    name: str = "digits"
    dir: Optional[str] = None
    limit_train: Optional[int] = None
    val_fraction: float = 0.1
    batch_size: int = 128
    augment: bool = True
    seed: int = 0


@dataclass
class TeacherConfig:
    arch: str = "wrn-16-4"
    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    weights: Optional[str] = None
    feature_module: str = "act"
    seed: int = 0


@dataclass
class PartitionConfig:
    rule: Literal["ah", "coact", "random"] = "ah"
    top_k: int = 50
    # auto: the percentile whose K groups are most modular on the whole graph (partition/threshold_choice.py)
    threshold_percentile: Union[float, Literal["auto"]] = 99.0
    resolution: float = 0.7
    max_imbalance: float = 1.5
    seed: int = 0


@dataclass
class StudentsConfig:
    k: Union[int, Literal["auto"]] = 2
    arch: str = "wrn-16-1"
    family: str = "wrn"  # a registered model family with sizes (nonn.models.register_model_family), searched by budget
    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    alpha: float = 0.9
    temperature: float = 4.0
    at_form: Literal["spatial", "pooled"] = "spatial"
    beta: Optional[float] = None
    drop_prob: float = 0.0
    seed: int = 0
    # The teacher's targets are made once for this many augmentation views of each training image (every
    # distinct view when there are no more than that); auto: a quarter of the epochs. 0 runs the teacher on
    # every batch instead (slower; every epoch then sees fresh views).
    teacher_views: Union[int, Literal["auto"]] = "auto"

    def resolved_beta(self) -> float:
        """beta's default depends on the form: the spatial sum and the pooled vector differ in scale."""
        if self.beta is not None:
            return self.beta
        return 10.0 if self.at_form == "spatial" else 1e4

    def resolved_teacher_views(self) -> int:
        """teacher_views, with auto as a quarter of the epochs (at least 1): the teacher then costs a quarter of
        what running it on every batch does."""
        if self.teacher_views == "auto":
            return max(1, self.epochs // 4)
        return int(self.teacher_views)


@dataclass
class BudgetConfig:
    """Per-device limits. When either is set, each student's architecture is chosen from students.family."""

    memory: Optional[str] = None
    macs: Optional[str] = None
    dtype_bytes: int = 4

    @property
    def given(self) -> bool:
        return self.memory is not None or self.macs is not None


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    progress: Union[bool, Literal["auto"]] = "auto"  # auto: progress bars only on a terminal
    logger: Literal["csv", "tensorboard"] = "csv"  # per-epoch logs under RUN_DIR/logs/ (tensorboard: CSV as well)
    keep_checkpoints: bool = False  # keep RUN_DIR/checkpoints/<stage>/ after the stage finishes

    def training_settings(self) -> dict[str, Any]:
        """The keys that change what a training stage computes (hardware, parallelism, numerics); not display,
        logging or checkpoint keeping, so changing those never retrains a stage."""
        return {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
                "strategy": self.strategy, "precision": self.precision}

    @property
    def show_progress(self) -> bool:
        """Whether to draw progress bars: a log file would fill with their redraws."""
        return self.progress is True or (self.progress == "auto" and sys.stderr.isatty())


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    students: StudentsConfig = field(default_factory=StudentsConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_compact_yaml(self) -> str:
        """One line per section (YAML flow style): the form the README and `nonn config` show."""
        lines = []
        for section, values in self.to_dict().items():
            flow = yaml.safe_dump({section: values}, default_flow_style=True, width=10**6, sort_keys=False)
            lines.append(flow.strip()[1:-1])  # drop the outer braces: a block mapping of flow mappings
        return "\n".join(lines) + "\n"

    def slice_hash(self, *sections: str, extra: Any = None) -> str:
        """A hash of some sections (and extra inputs), to tell whether a stage's artifact is up to date."""
        d = self.to_dict()
        payload = json.dumps({"sections": {s: d[s] for s in sections}, "extra": extra}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, str(tp))


def _coerce(key: str, value: Any, tp) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                pass
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}; fix it in the config file or --set {key}=...")


def _apply(cfg: Config, key: str, value: Any) -> None:
    section_name, _, name = key.partition(".")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    if section_name not in sections or not name:
        raise ConfigError(f"unknown config key '{key}'; keys look like section.name with section one of: "
                          f"{', '.join(sections)}")
    section = getattr(cfg, section_name)
    fields = {f.name: f for f in dataclasses.fields(section)}
    if name not in fields:
        raise ConfigError(f"unknown config key '{key}'; valid keys in '{section_name}': "
                          f"{', '.join(section_name + '.' + f for f in fields)}")
    hints = typing.get_type_hints(type(section))
    setattr(section, name, _coerce(key, value, hints[name]))


# The families nonn.models registers with sizes; any other is looked up in the registry.
_BUILTIN_FAMILIES = ("wrn", "mbv2")


def _check_family(family: str) -> None:
    """students.family must be a family the budget search can search: registered, with sizes."""
    if family in _BUILTIN_FAMILIES and "nonn.models" not in sys.modules:
        return  # nothing could have been registered or replaced yet; spare `nonn config` importing torch
    from .budget import searchable_families
    searchable = searchable_families()
    if family not in searchable:
        raise ConfigError(f"students.family must be one of: {', '.join(searchable)} (the model families with sizes; "
                          f"add one with nonn.models.register_model_family(..., sizes=[...])), got {family!r}; "
                          "fix it in the config file or --set students.family=...")


def _check_ranges(cfg: Config) -> None:
    checks = [
        (cfg.students.k == "auto" or cfg.students.k >= 1, "students.k must be at least 1 (or auto)"),
        (cfg.students.k != "auto" or cfg.budget.given,
         "students.k=auto needs a device budget; pass --device-memory and/or --device-macs"),
        (cfg.budget.dtype_bytes in (1, 2, 4, 8), "budget.dtype_bytes must be 1, 2, 4 or 8"),
        (cfg.teacher.epochs >= 0, "teacher.epochs must be >= 0"),
        (cfg.students.epochs >= 1, "students.epochs must be >= 1"),
        (cfg.data.batch_size >= 1, "data.batch_size must be >= 1"),
        (cfg.data.limit_train is None or cfg.data.limit_train >= 1, "data.limit_train must be >= 1 or null"),
        (0 < cfg.data.val_fraction < 1, "data.val_fraction must be between 0 and 1"),
        (0 <= cfg.students.alpha <= 1, "students.alpha must be between 0 and 1"),
        (cfg.students.temperature > 0, "students.temperature must be > 0"),
        (cfg.students.beta is None or cfg.students.beta >= 0, "students.beta must be >= 0"),
        (cfg.students.teacher_views == "auto" or cfg.students.teacher_views >= 0,
         "students.teacher_views must be >= 0 (0 runs the teacher on every batch) or auto"),
        (0 <= cfg.students.drop_prob <= 1, "students.drop_prob must be between 0 and 1"),
        (cfg.partition.top_k >= 1, "partition.top_k must be >= 1"),
        (cfg.partition.threshold_percentile == "auto" or 0 <= cfg.partition.threshold_percentile <= 100,
         "partition.threshold_percentile must be in [0, 100] or auto"),
        (cfg.partition.resolution > 0, "partition.resolution must be > 0"),
        (cfg.partition.max_imbalance >= 1, "partition.max_imbalance must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _check_family(cfg.students.family)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not prefix:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (so ``3`` is an int and ``null`` is None)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set takes key=value, got {item!r}; e.g. --set students.epochs=10")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Defaults, then the YAML file, then overrides (a dict or ``key=value`` strings); validated."""
    cfg = Config()
    if path is not None:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist; check the --config path") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML ({str(e).splitlines()[0]}); fix its syntax") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {p} must be a mapping of sections; see the README for an example")
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config section '{section}' must be a mapping of keys, got {values!r}")
        for key, value in _flatten(raw).items():
            _apply(cfg, key, value)
    if isinstance(overrides, list):
        overrides = dict(parse_override(item) for item in overrides)
    for key, value in (overrides or {}).items():
        _apply(cfg, key, value)
    _check_ranges(cfg)
    return cfg
