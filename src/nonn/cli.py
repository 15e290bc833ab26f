"""The `nonn` command: parse arguments, call the library, print. No logic of its own.

Heavy imports (torch) happen inside the handlers, so `nonn node` starts without them.
"""

from __future__ import annotations

import argparse
import json
import sys


def _config_from_args(args):
    """The config file, then --set, then the flags this command has (flags it lacks count as unset)."""
    from .config import load_config, parse_override
    overrides = dict(parse_override(item) for item in args.set or [])
    flags = {"dataset": "data.name", "data_dir": "data.dir", "device_memory": "budget.memory",
             "device_macs": "budget.macs"}
    for flag, key in flags.items():
        if getattr(args, flag, None) is not None:
            overrides[key] = getattr(args, flag)
    k = getattr(args, "k", None)
    if k is not None:
        overrides["students.k"] = "auto" if k == "auto" else _int_or_error("--k", k)
    return load_config(args.config, overrides)


def _int_or_error(flag: str, text: str) -> int:
    from .errors import ConfigError
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} takes a whole number or 'auto', got {text!r}") from None


def _print_metrics(rd) -> None:
    from .stages.evaluate import format_table
    print(format_table(json.loads(rd.metrics.read_text())))


def cmd_run(args) -> int:
    from .pipeline import init_run, run_all
    cfg = _config_from_args(args)
    rd = init_run(args.out or f"runs/{cfg.data.name}-k{cfg.students.k}", cfg)
    run_all(rd, force=args.force)
    _print_metrics(rd)
    print(f"run directory: {rd.path}")
    return 0


def cmd_config(args) -> int:
    print(_config_from_args(args).to_compact_yaml(), end="")
    return 0


def cmd_stage(args) -> int:
    from pathlib import Path

    from .pipeline import run_stage
    from .rundir import RunDir
    rd = RunDir(Path(args.run_dir))
    rd.load_config()
    options = {"check": not args.no_check} if args.command == "export" else {}
    run_stage(rd, args.command, force=args.force, **options)
    if args.command == "evaluate":
        _print_metrics(rd)
    if args.command == "export":
        print(f"manifest: {rd.manifest}")
        if args.int8:
            from .stages.quantize import Int8Settings, run as run_int8
            settings = Int8Settings(args.calibration_images, args.calibration_method, args.calibration_seed,
                                    args.max_drop)
            print(f"int8 manifest: {run_int8(rd, settings, force=args.force)}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report
    path = write_report(args.run_dir)
    print(f"report: {path}")
    if args.screenshot:
        from .report.browser import open_in_chromium
        check = open_in_chromium(path, args.screenshot)
        print(f"screenshot: {check.screenshot} ({check.images} images, {len(check.console_errors)} console errors)")
    return 0


def cmd_deploy_local(args) -> int:
    from .deploy.local import deploy_local, format_table
    result = deploy_local(args.run_dir, insecure=args.insecure, deadline_ms=args.deadline_ms, limit=args.limit,
                          concurrency=args.concurrency, requests=args.requests,
                          startup_timeout_s=args.startup_timeout_s, int8=args.int8)
    print(format_table(result))
    print(f"wrote {result['run']}/deploy{'-int8' if args.int8 else ''}.json")
    if not result["accuracy"]["match"]:
        print("ACCURACY MISMATCH: the deployed NoNN disagrees with the in-process one; see deploy.json",
              file=sys.stderr)
        return 1
    return 0


def cmd_bundle(args) -> int:
    from .deploy.bundle import describe, make_bundles
    bundles = make_bundles(args.run_dir, args.inventory, args.out, days=args.days, force=args.force)
    print(describe(bundles))
    print(f"the CA's key stays in {args.out}/ca/ (on no device); copy each .tar.gz to its device and run install.sh")
    return 0


def cmd_bench_edge(args) -> int:
    from .bench.edge_bench import bench_edge, format_table
    result = bench_edge(teacher_arch=args.teacher_arch, student_arch=args.student_arch, k=args.k,
                        input_shape=args.input, requests=args.requests, rounds=args.rounds, out=args.out,
                        insecure=args.insecure, int8=args.int8)
    print(format_table(result))
    print(f"wrote {result['out']}/bench_edge.json")
    return 0


def cmd_bench_train(args) -> int:
    from .ablate import PRESETS
    from .bench.train_speed import bench_train, format_table
    from .config import load_config, parse_override
    overrides = dict(PRESETS["fashion-mnist"]["overrides"])
    overrides.update(parse_override(item) for item in args.set or [])
    for flag, key in (("dataset", "data.name"), ("data_dir", "data.dir")):
        if getattr(args, flag, None) is not None:
            overrides[key] = getattr(args, flag)
    result = bench_train(load_config(args.config, overrides), batches=args.batches, rounds=args.rounds, out=args.out)
    print(format_table(result))
    if args.out:
        print(f"wrote {args.out}/bench_train.json and bench_train.md")
    return 0


def cmd_bench(args) -> int:
    from .bench.case_study import bench
    from .bench.report import format_summary
    if args.k is not None and "," in args.k:  # a sweep over K
        from .bench.sweep import sweep
        if args.run_dir is not None:
            from .errors import ConfigError
            raise ConfigError("--k with several values belongs to the architecture form; a run directory has its own K")
        result = sweep(args.k, teacher_arch=args.teacher_arch, student_arch=args.student_arch,
                       input_shape=args.input, links=args.link, devices=args.device, requests=args.requests,
                       warmup=args.warmup, max_seconds=args.max_seconds, shaping=args.shaping, out=args.out)
        from pathlib import Path
        print((Path(result["out"]) / "bench.md").read_text())
        print(f"wrote {result['out']}/bench.json, bench.md and plots/sweep_*.png")
        return 0
    if args.k is not None:
        args.k = _int_or_error("--k", args.k)
    result = bench(args.run_dir, teacher_arch=args.teacher_arch, student_arch=args.student_arch, k=args.k,
                   input_shape=args.input, links=args.link, devices=args.device, requests=args.requests,
                   warmup=args.warmup, max_seconds=args.max_seconds, shaping=args.shaping, out=args.out)
    print(format_summary(result))
    print(f"wrote {result['out']}/bench.json, bench.md and plots/bench_*.png")
    return 0


def _int_list(flag: str, text: str, cast=int) -> list:
    from .errors import ConfigError
    try:
        return [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes a comma-separated list of numbers, got {text!r}") from None


def cmd_ablate(args) -> int:
    from pathlib import Path

    from .ablate import PRESETS, AblationPlan, run_ablation
    from .ablate_report import format_markdown
    from .config import load_config, parse_override
    from .errors import ConfigError
    preset = {"overrides": {}}
    if args.preset is not None:
        if args.preset not in PRESETS:
            raise ConfigError(f"unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}")
        preset = PRESETS[args.preset]
    cfg = _config_from_args(args)
    if preset["overrides"]:  # the preset, then the config file, --set and the flags on top
        user = dict(parse_override(item) for item in args.set or [])
        for flag, key in (("dataset", "data.name"), ("data_dir", "data.dir")):
            if getattr(args, flag, None) is not None:
                user[key] = getattr(args, flag)
        cfg = load_config(args.config, {**preset["overrides"], **user})
    defaults = AblationPlan()
    plan = AblationPlan(
        ks=_int_list("--k", args.ks) if args.ks else preset.get("ks", defaults.ks),
        percentiles=_int_list("--percentiles", args.percentiles, float) if args.percentiles
        else preset.get("percentiles", defaults.percentiles),
        seeds=_int_list("--seeds", args.seeds) if args.seeds else preset.get("seeds", defaults.seeds),
        variants=args.variants.split(",") if args.variants else preset.get("variants", defaults.variants))
    out = Path(args.out or (f"runs/quality-{args.preset}" if args.preset else "runs/ablate"))
    report = run_ablation(cfg, out, plan)
    print(format_markdown(report))
    print(f"wrote {out / 'ablation.md'}, ablation.json and ablation.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nonn", description="Compress a CNN into a Network of Neural Networks (NoNN).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from .stages import STAGES
    in_run = ", ".join(stage.name for stage in STAGES if stage.in_run)
    r = sub.add_parser("run", help=f"run every stage ({in_run}) into a run directory")
    r.add_argument("--config", help="YAML configuration file")
    r.add_argument("--dataset", help="digits (default), cifar10, cifar100, mnist, fashion-mnist")
    r.add_argument("--data-dir", help="where datasets are cached or already lie")
    r.add_argument("--k", help="number of students (devices), or 'auto': the smallest K whose students fit")
    r.add_argument("--device-memory", metavar="SIZE", help="weight memory per device, e.g. 200KB (sets budget.memory)")
    r.add_argument("--device-macs", metavar="COUNT", help="MACs per inference per device, e.g. 30M (sets budget.macs)")
    r.add_argument("--out", help="run directory (default runs/<dataset>-k<K>)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key; repeatable")
    r.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    r.set_defaults(func=cmd_run)

    g = sub.add_parser("config", help="print the resolved configuration: the defaults, then --config and --set")
    g.add_argument("--config", help="YAML configuration file")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key; repeatable")
    g.set_defaults(func=cmd_config)

    for stage in STAGES:
        s = sub.add_parser(stage.name, help=stage.help)
        s.add_argument("run_dir", metavar="RUN_DIR")
        s.add_argument("--force", action="store_true", help="rerun even when up to date")
        if stage.name == "export":
            s.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch parity check")
            s.add_argument("--int8", "--quantize-int8", action="store_true",
                           help="also write int8 students (static QDQ, per-channel weights) to RUN_DIR/onnx-int8")
            s.add_argument("--calibration-images", type=int, default=400, metavar="N",
                           help="--int8: validation images to calibrate on (default: 400, or all when fewer)")
            s.add_argument("--calibration-method", default="minmax", choices=("minmax", "entropy", "percentile"),
                           help="--int8: activation range calibration (default: minmax)")
            s.add_argument("--calibration-seed", type=int, default=0, metavar="S",
                           help="--int8: seed of the calibration sample (default: 0)")
            s.add_argument("--max-drop", type=float, default=0.5, metavar="POINTS",
                           help="--int8: fail when int8 test accuracy is this many points below fp32 (default: 0.5)")
        s.set_defaults(func=cmd_stage)

    rp = sub.add_parser("report", help="write RUN_DIR/report.html: one self-contained page of the run's artifacts")
    rp.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or an ablation's --out folder)")
    rp.add_argument("--screenshot", metavar="PNG", help="also render it in headless chromium and save a screenshot")
    rp.set_defaults(func=cmd_report)

    a = sub.add_parser("ablate", help="compare partitions, attention transfer and KD over K, thresholds and seeds")
    a.add_argument("--config", help="YAML configuration file (the base of every variant)")
    a.add_argument("--dataset", help="dataset name (default digits)")
    a.add_argument("--data-dir", help="where datasets are cached or already lie")
    a.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a base config key; repeatable")
    a.add_argument("--preset", help="a named benchmark: fashion-mnist (the CPU table in the README) or "
                   "fashion-mnist-full (the same at full scale, for a GPU); flags given override it")
    a.add_argument("--k", dest="ks", help="values of K (default 1,2,4,8)")
    a.add_argument("--percentiles", help="partition threshold percentiles (default 90,95,99)")
    a.add_argument("--seeds", help="seeds (default 0,1,2)")
    a.add_argument("--variants", help="which variants: ah, coact, random, no-at, pooled, kd, compressed "
                   "(default ah,coact,random,no-at,kd)")
    a.add_argument("--out", help="output directory (default runs/ablate, or runs/quality-PRESET)")
    a.set_defaults(func=cmd_ablate)

    d = sub.add_parser("deploy-local", help="serve a run as K node processes + a gateway here and measure it",
                       description="Start K nodes and a gateway on 127.0.0.1 (mutual TLS), stream the test split "
                                   "through them, measure accuracy, latency, bytes and memory; write deploy.json.")
    d.add_argument("run_dir", metavar="RUN_DIR")
    d.add_argument("--insecure", action="store_true", help="plaintext instead of mutual TLS")
    d.add_argument("--deadline-ms", type=float, default=1000.0, metavar="MS", help="gateway deadline (default: 1000)")
    d.add_argument("--limit", type=int, metavar="N", help="stream only the first N test images")
    d.add_argument("--concurrency", default="1,8", metavar="C,C", help="client threads per latency run (default: 1,8)")
    d.add_argument("--requests", type=int, default=200, metavar="N", help="requests per latency run (default: 200)")
    d.add_argument("--startup-timeout-s", type=float, default=60.0, metavar="S",
                   help="how long each process may take to start (default: 60)")
    d.add_argument("--int8", action="store_true", help="serve the int8 students (RUN_DIR/onnx-int8, made when stale)")
    d.set_defaults(func=cmd_deploy_local)

    u = sub.add_parser("bundle", help="one installable bundle per device of an inventory, and client credentials",
                       description="Write DIR/<device>/ and DIR/<device>.tar.gz for each device of the inventory "
                                   "(its model or head and manifest, certificate, systemd unit, flags, install.sh), "
                                   "and DIR/client.tar.gz.")
    u.add_argument("run_dir", metavar="RUN_DIR")
    u.add_argument("--inventory", required=True, metavar="YAML", help="devices: name, address, role, [port, cpu, user]")
    u.add_argument("--out", required=True, metavar="DIR")
    u.add_argument("--days", type=int, default=825, help="certificate validity (default: 825)")
    u.add_argument("--force", action="store_true", help="replace the bundles already in DIR")
    u.set_defaults(func=cmd_bundle)

    b = sub.add_parser("bench-edge", help="gateway overhead, throughput vs compute bound, node vs teacher memory",
                       description="Benchmark the edge runtime with UNTRAINED models of the given architectures.")
    b.add_argument("--teacher-arch", default="wrn-40-4")
    b.add_argument("--student-arch", default="wrn-16-1")
    b.add_argument("--k", type=int, default=2, help="number of students (default: 2)")
    b.add_argument("--input", default="3x32x32", metavar="CxHxW", help="input shape (default: 3x32x32)")
    b.add_argument("--requests", type=int, default=1000, metavar="N",
                   help="requests per concurrency level and round (default: 1000)")
    b.add_argument("--rounds", type=int, default=3, metavar="N",
                   help="rounds of ceiling, c=1 and c=8 in turn; medians are reported (default: 3)")
    b.add_argument("--out", default="runs/bench-edge", metavar="DIR", help="default: runs/bench-edge")
    b.add_argument("--insecure", action="store_true", help="plaintext instead of mutual TLS")
    b.add_argument("--int8", action="store_true", help="serve the students quantized to int8 (static QDQ)")
    b.set_defaults(func=cmd_bench_edge)

    t = sub.add_parser("bench-train", help="images/s of the teacher and student stages, old path against new")
    t.add_argument("--config", help="YAML configuration file (default: the fashion-mnist preset's configuration)")
    t.add_argument("--dataset", help="dataset name (default fashion-mnist)")
    t.add_argument("--data-dir", help="where datasets are cached or already lie")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key; repeatable")
    t.add_argument("--batches", type=int, default=10, metavar="N", help="training steps per path per round (default 10)")
    t.add_argument("--rounds", type=int, default=3, metavar="N", help="interleaved rounds (default 3)")
    t.add_argument("--out", metavar="DIR", help="also write bench_train.json and bench_train.md there")
    t.set_defaults(func=cmd_bench_train)

    c = sub.add_parser("bench", help="the paper's case study: memory, compute, energy per node; total latency",
                       description="Measure NoNN against the teacher, a compressed model and layer-split deployments "
                                   "of both, over emulated links, in one run. Give RUN_DIR (trained models) or "
                                   "--teacher-arch/--student-arch (UNTRAINED models of those architectures).")
    c.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="a trained run directory")
    c.add_argument("--teacher-arch", help="architecture form: teacher architecture, e.g. wrn-40-4")
    c.add_argument("--student-arch", help="architecture form: student architecture, e.g. wrn-16-1")
    c.add_argument("--k", help="architecture form: number of students (default: 2); a list such as 2,4,8 sweeps K")
    c.add_argument("--input", metavar="CxHxW", help="architecture form: input shape (default: 3x32x32)")
    c.add_argument("--link", action="append", metavar="NAME", help="link profile: wifi, ble, ethernet (repeatable; "
                                                                  "default: wifi)")
    c.add_argument("--device", action="append", metavar="NAME",
                   help="device profile for energy (repeatable; default: rpi3b_plus and nrf52840)")
    c.add_argument("--requests", type=int, default=100, metavar="N", help="inferences per deployment (default: 100)")
    c.add_argument("--warmup", type=int, default=3, metavar="N", help="unrecorded rounds first (default: 3)")
    c.add_argument("--max-seconds", type=float, default=60.0, metavar="S",
                   help="stop a deployment after S seconds of its own time once it has 3 samples (default: 60)")
    c.add_argument("--shaping", choices=("auto", "netns", "in-process"), default="auto",
                   help="link emulation: namespaces + tbf where permitted (auto), required (netns), or the "
                        "modelled transfer time added in process (in-process)")
    c.add_argument("--out", metavar="DIR", help="default: RUN_DIR, or runs/bench-<teacher>-<student>-k<K>")
    c.set_defaults(func=cmd_bench)

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
        from .errors import ReportedError
        if not isinstance(e, ReportedError):  # a child process printed that one already
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
