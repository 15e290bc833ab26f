"""NodeOptions/GatewayOptions are the one source of the edge settings: the CLI's defaults,
its flags read back, and command lines made from options."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest
from edge_support import edge_env

from nonn.edge.commands import register
from nonn.edge.options import DEFAULT_MAX_MESSAGE_BYTES, MAX_BATCH, GatewayOptions, NodeOptions, security_args
from nonn.edge.tls import TLSFiles


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser


def test_the_cli_defaults_are_the_options_defaults():
    parser = _parser()
    node = NodeOptions.from_args(parser.parse_args(["node", "--model", "m.onnx", "--insecure"]))
    gateway = GatewayOptions.from_args(parser.parse_args(["gateway", "--manifest", "m", "--nodes", "a:1", "--insecure"]))
    assert dataclasses.replace(node, tls=None) == NodeOptions(insecure=True)
    assert dataclasses.replace(gateway, tls=None) == GatewayOptions(insecure=True)
    assert GatewayOptions().max_batch == MAX_BATCH and NodeOptions().max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES


def test_every_flag_of_an_option_is_documented_with_its_default():
    for cls, command in ((NodeOptions, "node"), (GatewayOptions, "gateway")):
        sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        helps = {flag: action.help for action in sub._actions for flag in action.option_strings}
        for name, f in cls.flags().items():
            assert helps[f.metadata["flag"]] == f.metadata["help"], name
        for f in dataclasses.fields(cls):
            assert f.metadata["help"], f"{cls.__name__}.{f.name} is undocumented"


def test_command_lines_made_from_options_read_back_as_the_same_options():
    tls = TLSFiles("node.pem", "node.key", "ca.pem")
    for options, command in (
        (NodeOptions(tls=tls, intra_op_threads=2, delay_ms=2.5, max_message_bytes=65536), ["node", "--model", "m"]),
        (GatewayOptions(insecure=True, deadline_s=0.3, degraded=True, nodes_ca="nodes.pem", max_batch=4),
         ["gateway", "--manifest", "m", "--nodes", "a:1"]),
    ):
        back = type(options).from_args(_parser().parse_args([*command, *options.cli_args()]))
        expected = options if options.tls else dataclasses.replace(options, tls=TLSFiles())
        assert back == expected


def test_defaults_make_no_flags_and_a_setting_without_a_flag_is_refused():
    assert NodeOptions().cli_args() == [] and GatewayOptions().cli_args() == []
    assert GatewayOptions(deadline_s=1.5).cli_args() == ["--deadline-ms", "1500"]
    with pytest.raises(ValueError, match="workers has no command-line flag"):
        NodeOptions(workers=8).cli_args()


def test_security_args():
    assert security_args(None, True) == ["--insecure"]
    assert security_args(("c.pem", "c.key", None), False) == ["--tls-cert", "c.pem", "--tls-key", "c.key"]


def test_of_overrides_fields_and_refuses_unknown_ones():
    base = GatewayOptions(deadline_s=2.0)
    assert GatewayOptions.of(base, degraded=True) == GatewayOptions(deadline_s=2.0, degraded=True)
    assert GatewayOptions.of(None) == GatewayOptions() and GatewayOptions.of(base) is base
    with pytest.raises(TypeError):
        GatewayOptions.of(base, max_batches=3)
    with pytest.raises(TypeError):
        GatewayOptions.of(NodeOptions())


def test_the_options_import_nothing_but_the_standard_library():
    code = ("import sys; import nonn.edge.options, nonn.edge.commands\n"
            "assert 'grpc' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60,
                            env=edge_env())
    assert result.returncode == 0, result.stderr
