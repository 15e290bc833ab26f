"""The device runtime of NoNN: student nodes, the gateway and a client over gRPC.

Imports only the standard library, numpy, onnxruntime, grpcio and protobuf (cryptography
and Pillow lazily), never torch nor the rest of nonn, so this directory alone can be
copied to a board. Names are loaded on first use to keep `import nonn.edge` cheap.
"""

from __future__ import annotations

import importlib

from nonn.edge.errors import EdgeError, GatewayError, TensorError

_LAZY = {
    "serve_node": "nonn.edge.node",
    "run_node": "nonn.edge.node",
    "serve_gateway": "nonn.edge.gateway",
    "run_gateway": "nonn.edge.gateway",
    "NodeOptions": "nonn.edge.options",
    "GatewayOptions": "nonn.edge.options",
    "classify": "nonn.edge.client",
    "GatewayClient": "nonn.edge.client",
    "StreamingClient": "nonn.edge.client",
    "make_certs": "nonn.edge.certs",
    "TLSFiles": "nonn.edge.tls",
    "to_tensor": "nonn.edge.tensors",
    "from_tensor": "nonn.edge.tensors",
    "load_manifest": "nonn.edge.manifest",
    "register": "nonn.edge.commands",
}

__all__ = [  # noqa: PLE0604 (the lazy names are strings)
    "EdgeError", "GatewayError", "TensorError", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nonn.edge' has no attribute {name!r}")
