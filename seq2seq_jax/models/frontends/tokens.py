"""'tokens': the token embedding as a frontend."""
import jax

from seq2seq_jax.models import layers
from seq2seq_jax.models.frontends import FRONTENDS


@FRONTENDS.register('tokens')
class Tokens(layers.Embed):
  """int32 ids [B, S] (0 = padding) -> the embedding table's rows; mask ids > 0.

  `embed` looks ids up and `attend` gives tied logits (a Transformer sharing its embeddings
  uses this table for the target side too). The model supplies num_embeddings (the source
  vocabulary), features, dtype and init_fn; the one setting is layers.Embed's `stddev`.
  """
  reads = ('tokens',)

  def __call__(self, inputs: jax.Array, inputs_mask: jax.Array | None = None,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    del inputs_mask, train  # the ids carry their own padding (0)
    return self.embed(inputs), inputs > 0
