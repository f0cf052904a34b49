"""Runs written by the code before the redesign (commit 08b69df) still load and compute the same.

tests/fixtures/old_runs/ holds four tiny runs trained by that code (a G2P Transformer and
attention LSTM, the spoken-digits LAS and speech Transformer, each a few steps of its
`:smoke`-sized configuration): each run's config.json as that code wrote it, its last
checkpoint, and outputs.npz with a validation batch, the logits that code computed for it
and the ids its beam search decoded. Here the config.json goes through today's migration, the
checkpoint is restored into today's model, and both outputs must be the same. How they were
made: tests/fixtures/old_runs/README.md.
"""
import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import train
from seq2seq_jax.trainer.checkpoint import Checkpointer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'old_runs')
RUNS = ('g2p_transformer', 'g2p_lstm', 'speech_las', 'speech_transformer')


def _restore(name: str, tmp_path):
  workdir = str(tmp_path / name)
  shutil.copytree(os.path.join(FIXTURES, name), workdir)
  with open(os.path.join(workdir, 'config.json')) as f:
    old = json.load(f)
  old['mesh'] = {'data': 1, 'fsdp': 1, 'tensor': 1}   # one device: a batch of 4 rows
  config = config_lib.from_json(old)
  run = train.setup(config)
  ckpt = Checkpointer(workdir, read_only=True)
  state, _ = ckpt.restore(run.abstract_state)
  ckpt.close()
  return run, state, np.load(os.path.join(workdir, 'outputs.npz'))


@pytest.mark.parametrize('name', RUNS)
def test_old_checkpoint_restores_and_computes_the_same(name, tmp_path):
  run, state, expected = _restore(name, tmp_path)
  batch = {k.split('/', 1)[1]: expected[k] for k in expected.files if k.startswith('batch/')}
  logits = np.asarray(run.model.apply({'params': state.params}, batch, train=False))
  np.testing.assert_allclose(logits, expected['logits'], rtol=0, atol=1e-5)
  sources = {k.split('/', 1)[1]: expected[k] for k in expected.files if k.startswith('sources/')}
  predicted = np.asarray(run.predict_step(state.params, sources, jax.random.key(0)))
  np.testing.assert_array_equal(predicted, expected['predicted'])
