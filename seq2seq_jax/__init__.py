"""seq2seq_jax: functional Flax encoder-decoders, sharded training and decoding."""
