"""Tamga's command line, `tamga`, and the library under it.

The click commands (`main`, `_cmd_*`) only parse, call and print. Under them, tested
without click: `_client` (HTTP to a node's client API), `_docs` (building and signing
documents, reading scanned codes), `_actions` (each role's actions, also used by
`make testnet`), `_audit` (verify, follow, prove, check) and `_epcis` (provenance as
GS1 EPCIS 2.0).
"""
