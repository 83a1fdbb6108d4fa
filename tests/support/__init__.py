"""Helpers the tests share that are not fixtures (importable as ``support``)."""
