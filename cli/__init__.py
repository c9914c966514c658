"""Tamga's command line, `tamga`, and the library under it.

The click commands (`main`, `_cmd_*`) only parse, call and print. Under them, tested
without click and public, so that the demonstration and other tools walk the same
paths: `documents` (building and signing documents, reading scanned codes), `actions`
(each role's actions over a node client), `audit` (verify, follow, prove, check) and
`epcis` (provenance as GS1 EPCIS 2.0). Nodes are reached over HTTP with the client
library `node.client`, the only part of the node the CLI imports (but for
`tamga node run`, which runs a node in this process).
"""
