"""The `nonn` command: parse arguments, call the library, print. No logic of its own.

Heavy imports (torch) happen inside the handlers, so `nonn node` starts without them.
"""

from __future__ import annotations

import argparse
import json
import sys


def _config_from_args(args):
    from .config import load_config
    overrides: dict = {}
    from .config import parse_override
    for item in args.set or []:
        key, value = parse_override(item)
        overrides[key] = value
    if args.dataset is not None:
        overrides["data.name"] = args.dataset
    if args.data_dir is not None:
        overrides["data.dir"] = args.data_dir
    if args.k is not None:
        overrides["students.k"] = args.k
    return load_config(args.config, overrides)


def _print_metrics(rd) -> None:
    from .stages.evaluate import format_table
    print(format_table(json.loads(rd.metrics.read_text())))


def cmd_run(args) -> int:
    from .data import dataset_names
    from .errors import ConfigError
    from .pipeline import init_run, run_all
    cfg = _config_from_args(args)
    if cfg.data.name not in dataset_names():
        raise ConfigError(f"unknown dataset '{cfg.data.name}'; choose one of: {', '.join(dataset_names())}")
    rd = init_run(args.out or f"runs/{cfg.data.name}-k{cfg.students.k}", cfg)
    run_all(rd, force=args.force)
    _print_metrics(rd)
    print(f"run directory: {rd.path}")
    return 0


def cmd_stage(args) -> int:
    from .pipeline import run_stage
    from .rundir import RunDir
    from pathlib import Path
    rd = RunDir(Path(args.run_dir))
    rd.load_config()
    run_stage(rd, args.command, force=args.force)
    if args.command == "evaluate":
        _print_metrics(rd)
    return 0


def cmd_export(args) -> int:
    from pathlib import Path
    from .export import export_run
    from .rundir import RunDir
    rd = RunDir(Path(args.run_dir))
    rd.load_config()
    export_run(rd, check=not args.no_check)
    print(f"wrote {rd.path / 'onnx' / 'manifest.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nonn", description="Compress a CNN into a Network of Neural Networks (NoNN).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run every stage (teacher, partition, students, evaluate) into a run directory")
    r.add_argument("--config", help="YAML configuration file")
    r.add_argument("--dataset", help="digits (default), cifar10, cifar100, mnist, fashion-mnist")
    r.add_argument("--data-dir", help="where datasets are cached or already lie")
    r.add_argument("--k", type=int, help="number of students (devices)")
    r.add_argument("--out", help="run directory (default runs/<dataset>-k<K>)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key; repeatable")
    r.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    r.set_defaults(func=cmd_run)

    helps = {"teacher": "train or load the teacher", "partition": "build the filter graph and partition it",
             "students": "train the K students jointly", "evaluate": "test accuracy, params, MACs, bytes sent"}
    for name, text in helps.items():
        s = sub.add_parser(name, help=text)
        s.add_argument("run_dir", metavar="RUN_DIR")
        s.add_argument("--force", action="store_true", help="rerun even when up to date")
        s.set_defaults(func=cmd_stage)

    e = sub.add_parser("export", help="export the students and head to ONNX with a manifest (parity-checked)")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch parity check")
    e.set_defaults(func=cmd_export)

    try:
        from .edge.commands import register
    except ImportError:  # the edge runtime is optional in a trimmed install
        register = None
    if register is not None:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    user_errors: tuple[type[BaseException], ...]
    from .errors import NonnError
    user_errors = (NonnError,)
    try:
        from .edge.errors import EdgeError
        user_errors += (EdgeError,)
    except ImportError:
        pass
    try:
        return int(args.func(args) or 0)
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
