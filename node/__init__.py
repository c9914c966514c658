"""Tamga node: one process per member state.

It serves the client API (`/v1`, see docs/API.md) and the peer API (`/peer`, mutual TLS
between the nodes genesis names), orders documents with Raft, applies them with the
ledger, gossips documents, attestations and status, and stops loudly if it diverges.
`node.client` is the client library of that API (the CLI and the tools use only it).
"""

from ._app import EXIT_DIVERGED, StartError, create_app, run_node, serve
from ._appends import AppendSigner, SignedAppends, entry_digest, unwrap
from ._config import ConfigError, NodeConfig, load_config, parse_config, render_config
from ._node import VERSION, Node, decode_entry, encode_entry
from ._tls import TlsError, api_ssl_context, cert_fingerprint_pem, make_certificate
from .client import ClientError, NodeClient, NodeError, SyncNodeClient

__all__ = [
    "AppendSigner",
    "SignedAppends",
    "entry_digest",
    "unwrap",
    "EXIT_DIVERGED",
    "VERSION",
    "ClientError",
    "ConfigError",
    "Node",
    "NodeClient",
    "NodeConfig",
    "NodeError",
    "StartError",
    "SyncNodeClient",
    "TlsError",
    "api_ssl_context",
    "cert_fingerprint_pem",
    "create_app",
    "decode_entry",
    "encode_entry",
    "load_config",
    "make_certificate",
    "parse_config",
    "render_config",
    "run_node",
    "serve",
]
