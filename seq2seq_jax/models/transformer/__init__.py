"""The Transformer encoder-decoder (model.name='transformer'): blocks.py (attention, MLP, the
encoder and decoder layers), model.py (the `Model` that chains them with a frontend, positions,
copying and a CTC head). build_model reads `Model` from here."""
from seq2seq_jax.models.transformer.model import Model

__all__ = ['Model']
