"""Integration tests: real containers through the ``corral`` command (root, Linux)."""
