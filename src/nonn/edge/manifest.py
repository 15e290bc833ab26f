"""The export manifest (onnx/manifest.json): shapes, normalisation, classes, files, SHA-256.

This module is the format's one owner: `write_manifest` writes it, `load_manifest` reads it back validated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from nonn.edge.errors import EdgeError
from nonn.edge.files import sha256_file, write_atomic

FORMAT = 1


@dataclass(frozen=True)
class Student:
    file: Path
    sha256: str
    input: str
    output: str
    features: int
    arch: str | None = None


@dataclass(frozen=True)
class Manifest:
    path: Path
    input_shape: tuple[int, int, int]  # C, H, W
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    partition_sizes: tuple[int, ...]
    students: tuple[Student, ...]
    head_file: Path
    head_sha256: str
    head_input: str
    head_output: str
    node_pixels: bool = False  # the student models carry their normalisation: nodes take uint8 pixels
    source: dict[str, Any] = field(default_factory=dict)  # what it was exported from (run, students' SHA-256)
    parity: dict[str, Any] | None = None  # ONNX Runtime against PyTorch, when checked at export
    inputs_hash: str | None = None  # the export stage's: tells whether the export is up to date
    quantization: dict[str, Any] | None = None  # int8 students: how they were quantized and checked (else fp32)

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of manifest.json; file names relative to the manifest's directory."""
        root = self.path.parent
        d: dict[str, Any] = {
            "format": FORMAT,
            "input": {"shape": list(self.input_shape), "dtype": "float32", "layout": "NCHW", "name": "image"},
            "normalization": {"scale": self.scale, "mean": list(self.mean), "std": list(self.std)},
            "node_pixels": self.node_pixels,
            "classes": list(self.classes),
            "partition_sizes": list(self.partition_sizes),
            "students": [{"file": s.file.relative_to(root).as_posix(), "sha256": s.sha256, "input": s.input,
                          "output": s.output, "features": s.features, "arch": s.arch} for s in self.students],
            "head": {"file": self.head_file.relative_to(root).as_posix(), "sha256": self.head_sha256,
                     "input": self.head_input, "output": self.head_output},
            "source": dict(self.source),
        }
        if self.parity is not None:
            d["parity"] = dict(self.parity)
        if self.inputs_hash is not None:
            d["inputs_hash"] = self.inputs_hash
        if self.quantization is not None:
            d["quantization"] = dict(self.quantization)
        return d


def write_manifest(manifest: Manifest) -> Path:
    """Write manifest.json to manifest.path atomically (a temporary file beside it, then a rename)."""
    manifest.path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(manifest.path, (json.dumps(manifest.to_dict(), indent=2) + "\n").encode())
    return manifest.path


def _confined(root: Path, name, manifest: Path) -> Path:
    """root / name, for a relative file name that stays inside the manifest's folder; checked
    before anything is opened, and the error names the file as written, not where it leads."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"file name {name!r} is not a file name")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(name).drive or ".." in pure.parts:
        raise EdgeError(f"manifest {manifest} names file {name!r} outside its folder; file names must be "
                        "relative to the manifest's folder, without '..' (re-export with `nonn export`)")
    return root / pure


def _verify(path: Path, expected: str, manifest: Path) -> None:
    if not path.is_file():
        raise EdgeError(f"{path} named in {manifest} is missing; copy the whole onnx/ directory")
    if sha256_file(path) != str(expected).lower():
        raise EdgeError(f"{path} does not match its SHA-256 in {manifest}; "
                        "copy it again or re-export with `nonn export`")


def load_manifest(path: str | Path, *, verify: bool = True) -> Manifest:
    """Parse and validate manifest.json; with `verify`, check every file's SHA-256."""
    path = Path(path)
    fix = "re-export with `nonn export`"
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise EdgeError(f"cannot read manifest {path}: {exc.strerror}; "
                        "pass the manifest.json written by `nonn export`") from None
    except json.JSONDecodeError as exc:
        raise EdgeError(f"manifest {path} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        fmt = raw.get("format") if isinstance(raw, dict) else None
        raise EdgeError(f"manifest {path} has format {fmt!r}, this runtime reads format {FORMAT}; {fix}")
    try:
        spec = raw["input"]
        shape = tuple(int(d) for d in spec["shape"])
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input shape {list(shape)} is not [C, H, W]")
        if spec.get("dtype", "float32") != "float32" or spec.get("layout", "NCHW") != "NCHW":
            raise ValueError("input must be float32 NCHW")
        norm = raw["normalization"]
        scale = float(norm["scale"])
        mean = tuple(float(v) for v in norm["mean"])
        std = tuple(float(v) for v in norm["std"])
        if len(mean) != shape[0] or len(std) != shape[0] or min(std) <= 0 or scale <= 0:
            raise ValueError("normalization needs one mean and one positive std per channel and a positive scale")
        classes = tuple(str(c) for c in raw["classes"])
        sizes = tuple(int(n) for n in raw["partition_sizes"])
        root = path.parent
        students = tuple(
            Student(_confined(root, s["file"], path), str(s["sha256"]), str(s["input"]), str(s["output"]),
                    int(s["features"]), None if s.get("arch") is None else str(s["arch"]))
            for s in raw["students"]
        )
        if not students or len(students) != len(sizes):
            raise ValueError("students and partition_sizes must list the same, non-zero number of entries")
        for k, (student, size) in enumerate(zip(students, sizes)):
            if student.features != size or size < 1:
                raise ValueError(f"student {k} has {student.features} features but partition_sizes says {size}")
        if len(classes) < 1:
            raise ValueError("classes is empty")
        head = raw["head"]
        manifest = Manifest(
            path=path, input_shape=shape, scale=scale, mean=mean, std=std, classes=classes,
            partition_sizes=sizes, students=students, head_file=_confined(root, head["file"], path),
            head_sha256=str(head["sha256"]), head_input=str(head["input"]), head_output=str(head["output"]),
            node_pixels=raw.get("node_pixels", False) is True,
            source=dict(raw.get("source") or {}),
            parity=raw["parity"] if isinstance(raw.get("parity"), dict) else None,
            inputs_hash=None if raw.get("inputs_hash") is None else str(raw["inputs_hash"]),
            quantization=raw["quantization"] if isinstance(raw.get("quantization"), dict) else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise EdgeError(f"manifest {path} is invalid: {what}; {fix}") from None
    if verify:
        for student in manifest.students:
            _verify(student.file, student.sha256, path)
        _verify(manifest.head_file, manifest.head_sha256, path)
    return manifest


def load_gateway_manifest(path: str | Path) -> Manifest:
    """The manifest as a gateway needs it: the head must be present and match; a student's file is
    checked only where it is present (on a device of its own the gateway holds the head and the
    manifest alone, and each node's SHA-256 is checked over its link)."""
    manifest = load_manifest(path, verify=False)
    for student in manifest.students:
        if student.file.exists():
            _verify(student.file, student.sha256, manifest.path)
    _verify(manifest.head_file, manifest.head_sha256, manifest.path)
    return manifest
