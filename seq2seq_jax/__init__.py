"""seq2seq_jax: functional Flax encoder-decoders, sharded training and decoding."""


def load(workdir: str, checkpoint: str | int | None = None, config=None, overrides=()):
  """A trained model loaded once from a workdir: `.predict(inputs)` returns one output string
  per input; see seq2seq_jax/trainer/inference.py."""
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  return inference.load(workdir, checkpoint=checkpoint, config=config, overrides=overrides)
