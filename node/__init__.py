"""Tamga node."""
