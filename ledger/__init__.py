"""Tamga ledger."""
