"""Prints how far our Marian, BART and T5 loaders are from transformers on the fixtures that
tools/make_pretrained_text_fixtures.py wrote (tests/test_pretrained_text.py asserts the same
to 1e-4): max abs differences of the encoder output and logits, and identical generate rows.

  python tools/pretrained_text_check.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp

from seq2seq_jax.models import build_model
from seq2seq_jax.pretrained import bart
from seq2seq_jax.pretrained import marian
from seq2seq_jax.pretrained import t5

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures')


def main():
  print('| checkpoint | encoder max abs diff | logits max abs diff | greedy rows identical '
        '| 3-beam rows identical |')
  print('|---|---|---|---|---|')
  for module, family, tag in ((marian, 'marian', 'a'), (marian, 'marian', 'b'),
                              (bart, 'bart', 'a'), (t5, 't5', 'a'), (t5, 't5', 'b'),
                              (t5, 't5', 'c')):
    root = os.path.join(FIXTURES, family)
    config, params, cfg = module.load_hf(os.path.join(root, f'hf_{tag}'))
    io = np.load(os.path.join(root, f'io_{tag}.npz'))
    pad = cfg.get('pad_token_id', 0)
    sizes = marian.vocab_sizes(cfg) if family == 'marian' else (cfg['vocab_size'],) * 2
    model = build_model(config, *sizes)
    src = jnp.asarray(module.to_ours(io['inputs'], pad))
    dec = jnp.asarray(module.to_ours(io['decoder_inputs'], pad))
    encoded, _ = model.apply({'params': params}, src, method='encode')
    logits = np.asarray(model.apply({'params': params}, {'inputs': src, 'decoder_inputs': dec}))
    logits = logits[..., module.from_ours(np.arange(logits.shape[-1]), pad)]
    real = io['attention_mask'].astype(bool)
    enc_diff = np.abs(np.asarray(encoded)[real] - io['encoded'][real]).max()
    cells = [f'{family} {tag}', f'{enc_diff:.2e}', f'{np.abs(logits - io["logits"]).max():.2e}']
    for beam, key in ((1, 'greedy'), (3, 'beam3')):
      out = module.generate(model, params, cfg, io['inputs'], io[key].shape[1], beam)
      cells.append(f'{int(np.all(out == io[key], axis=1).sum())} / {len(out)}')
    print('| ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
