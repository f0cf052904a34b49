"""Decoding: beam search, greedy search and sampling (search.py)."""
