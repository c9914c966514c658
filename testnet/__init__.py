"""Tamga testnet."""
