"""Numbered keyspace migrations (see README.md in this folder)."""
