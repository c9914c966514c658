"""Tests of the Raft core, its storage and the cluster simulator."""
