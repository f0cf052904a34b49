"""Attention families of the recurrent decoders (`model.attention`), one module per family:
base.py (the registry, keys, softmax and 'none'), additive.py ('bahdanau', 'concat', 'see'),
luong.py ('dot', 'general'). Adding a family: a new module with one registered class, and one
import line here."""
from seq2seq_jax.models.rnn.attention import additive
from seq2seq_jax.models.rnn.attention import luong
from seq2seq_jax.models.rnn.attention.base import ATTENTIONS, Attention, SourceKeys

__all__ = ['ATTENTIONS', 'Attention', 'SourceKeys', 'additive', 'luong']
