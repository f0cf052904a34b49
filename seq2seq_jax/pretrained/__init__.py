"""Pretrained models from other toolkits, read into this codebase's models: readers of their
checkpoint formats (ctranslate2.py: CTranslate2's model.bin) and, per family, a preset of
registered parts with the mapping of its parameter names (whisper.py; marian.py: Marian /
OPUS-MT from the Hugging Face layout)."""
