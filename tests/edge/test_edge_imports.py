"""nonn.edge ships to devices alone: no torch, no other part of nonn, optional extras lazily."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from edge_support import edge_env

EDGE = Path(__file__).resolve().parents[2] / "src" / "nonn" / "edge"
THIRD_PARTY = {"numpy", "onnxruntime", "grpc", "grpc_health", "grpc_reflection", "google"}
LAZY_ONLY = {"cryptography": ("certs.py", "identity.py", "tls.py"), "PIL": ("images.py",),
             "prometheus_client": ("metrics.py",), "paho": ("mqtt.py",)}


def _imports(tree: ast.Module):
    """(module name, imported at module level?) for every import in a file."""
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top_level
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, id(node) in top_level


def test_edge_imports_only_the_allowed_modules():
    allowed = set(sys.stdlib_module_names) | THIRD_PARTY
    files = sorted(EDGE.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        for name, top_level in _imports(ast.parse(path.read_text(), str(path))):
            root = name.split(".")[0]
            where = f"{path.name} imports {name}"
            if root == "nonn":
                assert name.startswith("nonn.edge"), where
            elif root in LAZY_ONLY:
                assert path.name in LAZY_ONLY[root] and not top_level, f"{where} (only lazily in {LAZY_ONLY[root]})"
            elif root == "grpc_tools":
                assert path.name == "_protogen.py" and not top_level, where
            else:
                assert root in allowed and root != "torch", where


def test_edge_imports_in_a_process_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import nonn.edge, nonn.edge.node, nonn.edge.gateway, nonn.edge.client, nonn.edge.certs, "
            "nonn.edge.commands, nonn.edge.__main__\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('nonn.', 'torch', 'cryptography', 'PIL', 'prometheus_client', 'paho'))"
            " and not m.startswith('nonn.edge') and sys.modules[m] is not None)\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60,
                            env=edge_env())
    assert result.returncode == 0, result.stderr


def test_a_copy_of_only_nonn_edge_works(tmp_path, artifacts):
    """A device gets nonn/edge alone: `nonn` is then a namespace package."""
    shutil.copytree(EDGE, tmp_path / "nonn" / "edge", ignore=shutil.ignore_patterns("__pycache__"))
    src = str(EDGE.parents[1])
    code = (
        "import sys; sys.modules['torch'] = None\n"
        f"sys.path = [{str(tmp_path)!r}] + [p for p in sys.path if p not in ('', {src!r})]\n"
        "import nonn.edge.node, nonn.edge.gateway, nonn.edge.client, nonn.edge.__main__ as cli\n"
        f"assert nonn.edge.__file__.startswith({str(tmp_path)!r}), nonn.edge.__file__\n"
        f"server, port = nonn.edge.node.serve_node({str(artifacts.students[0])!r}, insecure=True)\n"
        "assert port > 0; server.stop(0)\n"
        f"sys.exit(cli.main(['certs', {str(tmp_path / 'pki')!r}, '--nodes', '1']))\n"
    )
    env = {k: v for k, v in edge_env().items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pki" / "node_0.key").is_file()
