"""Exports of trained models for serving elsewhere (ctranslate2.py: --mode=export)."""
