"""Tamga cli."""
