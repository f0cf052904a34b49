"""Recurrent encoder-decoders (model.name='rnn') as named parts: cells.py (CELLS), encoder.py,
attention/ (ATTENTIONS, one module per family), decoder.py (DECODERS, one cell per family),
bridge.py (BRIDGES), copy.py (pointer-generator and coverage), model.py (the `Model` that chains
them). build_model reads `Model` from here."""
from seq2seq_jax.models.rnn.cells import CELLS, GRUCell, LSTMCell, make_cell, zero_carry
from seq2seq_jax.models.rnn.encoder import EncoderLayer, pyramid_halve, reverse_valid
from seq2seq_jax.models.rnn.model import Model

__all__ = ['CELLS', 'EncoderLayer', 'GRUCell', 'LSTMCell', 'Model', 'make_cell',
           'pyramid_halve', 'reverse_valid', 'zero_carry']
