"""Tamga's benchmarks: code in the repository, each with a command in the README.

Each benchmark is a module run as `python -m bench.NAME` from the repository root:
`ledger_bench` (apply rate against raw Ed25519), `chain_bench` (auditor rate, bytes
per transfer, store open time), `raft_core_bench` (the Raft core alone),
`raft_bench` (three drivers with LevelDB and fsync), `tamga_bench` (a running
testnet end to end, also `tamga bench`) and `etcd_bench` (the comparison point).
They use only the public APIs of ledger, consensus, node and testnet: `bench.world`
builds ledger chains without a network, `bench.chart` draws a run as PNG.
"""
