"""Schemathesis hooks for tests/node/test_schema_fuzz.py: sign every generated request.

Loaded by the schemathesis CLI through SCHEMATHESIS_HOOKS; the reader's key file, the
chain id and the node's member state come from the environment the test sets.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import requests
import schemathesis

from ledger import KeyPair, request_headers


@schemathesis.auth(refresh_interval=None, retry_on=[])
class SignedRead:
    """Signs as a registered participant: the signature covers the method, the path and
    query exactly as requests will put them on the request line, the time, the node and
    a fresh nonce (each generated request is signed once, so none is a replay)."""

    def get(self, case: Any, context: Any) -> KeyPair:
        return KeyPair.load(Path(os.environ["TAMGA_FUZZ_READER_KEY"]))

    def set(self, case: Any, key: KeyPair, context: Any) -> None:
        sent = case.as_transport_kwargs()
        prepared = requests.Request(method=sent["method"], url=sent["url"], params=sent["params"]).prepare()
        headers = request_headers(key, os.environ["TAMGA_FUZZ_CHAIN_ID"], case.method, prepared.path_url,
                                  int(time.time() * 1000), os.environ["TAMGA_FUZZ_NODE"], secrets.token_hex(16))
        case.headers = {**(case.headers or {}), **headers}
