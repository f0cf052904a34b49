"""Datasets, vocabularies and deterministic batching."""
