"""Luong et al. 2015's multiplicative global attention (Sec. 3.1, Eq. 8), queried by the new
top state h_t (decoder 'luong'):

  'dot'      h_t^T h_s        (the annotations are the keys: needs decoder size == theirs)
  'general'  h_t^T W_a h_s    (W_a h_s computed once per sentence by SourceKeys)
"""
import jax.numpy as jnp

from seq2seq_jax.models.rnn.attention.base import ATTENTIONS, Attention


class _Multiplicative(Attention):
  family = 'luong'

  def score(self, query, keys, coverage):
    return jnp.einsum('bd,bsd->bs', query.astype(self.dtype), keys)


@ATTENTIONS.register('general')
class General(_Multiplicative):
  pass


@ATTENTIONS.register('dot')
class Dot(_Multiplicative):
  projects_keys = False
