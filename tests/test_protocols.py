"""The contracts: every task and model satisfies its Protocol, and data come from named sources.

Task(config) reads no data, so every experiment's task is built from its config as is; models
are built unbound with their defaults (nothing is initialised).
"""
import glob
import importlib
import os
import shutil
import pkgutil

import ml_collections
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax import models
from seq2seq_jax import tasks
from seq2seq_jax.data import sources
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import base as model_base
from seq2seq_jax.tasks import base as task_base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'experiments',
                                                                         '*.py'))
                     if not p.endswith('common.py'))


def _modules(package) -> list[str]:
  return [m.name for m in pkgutil.iter_modules(package.__path__)]


def _members(proto) -> list[str]:
  """The attributes and methods a Protocol declares."""
  names = set(getattr(proto, '__annotations__', {}))
  names |= {n for n, v in vars(proto).items()
            if callable(v) and (not n.startswith('_') or n == '__call__')}
  return sorted(names)


def test_every_task_module_exports_a_subclass_of_the_default_task():
  """The classes config.task can name implement the contract, so a Task(config) that
  isinstance-checks below has its methods from the class, not by accident."""
  found = []
  for name in _modules(tasks):
    cls = getattr(importlib.import_module(f'seq2seq_jax.tasks.{name}'), 'Task', None)
    if name == 'base' or cls is None:
      continue
    found.append(name)
    assert issubclass(cls, task_base.BaseTask), name
    missing = [m for m in _members(task_base.Task)
               if not hasattr(cls, m) and m != 'eval_batch_size']   # set by __init__
    assert not missing, (name, missing)
  assert {'g2p', 'translation', 'summarization', 'captioning', 'image_to_text', 'speech',
          'features_to_text'} <= set(found)


@pytest.mark.parametrize('experiment', EXPERIMENTS)
def test_every_experiments_task_satisfies_the_protocol(experiment, tmp_path):
  path = os.path.join(ROOT, 'experiments', experiment)
  config = config_lib.load_config(path)
  if config.model.get('pretrained'):
    # A pretrained model's task reads the checkpoint (its tokenizer, its vocabulary): the
    # tiny Whisper of the fixtures stands in for the experiment's package.
    fixtures = os.path.join(ROOT, 'tests', 'fixtures', 'whisper')
    for name in ('model.bin', 'config.json'):
      shutil.copy(os.path.join(fixtures, 'ct2_a', name), tmp_path / name)
    shutil.copy(os.path.join(fixtures, 'tokenizer.json'), tmp_path / 'tokenizer.json')
    # (its only language is English: a Czech experiment's prompt is set to it).
    config = config_lib.load_config(path, [('model.pretrained', str(tmp_path)),
                                           ('decode.language', 'en')])
  task = tasks.get_task(config)
  assert isinstance(task, task_base.Task)
  assert task.input_kind in ('tokens', 'features', 'image', 'audio')
  assert task.best_mode in ('min', 'max')


def test_features_to_text_task_satisfies_the_protocol(tmp_path):
  c = ml_collections.ConfigDict()
  c.task = 'features_to_text'
  c.data = dict(train_tsv='', eval_tsv='', test_tsv='', alphabet='ab', target_len=8,
                num_bins=4, frame_buckets=(16,))
  task = tasks.get_task(c)
  assert isinstance(task, task_base.Task) and task.source.name == 'tsv'


def test_the_protocol_lists_what_the_trainer_reads():
  assert {'src_vocab_size', 'tgt_vocab_size', 'input_kind', 'best_metric', 'best_mode',
          'eval_batch_size', 'setup', 'dummy_batch', 'train_data', 'make_batcher',
          'eval_loss_data', 'eval_set', 'collate_sources', 'decode_prediction',
          'target_tokens', 'score', 'encode_source', 'decode_rules'} == set(
              _members(task_base.Task))
  assert {'frontend', 'ctc_weight', 'init_cache', 'decode_step', 'ctc_logits',
          '__call__'} <= set(_members(model_base.Model))


@pytest.mark.parametrize('name', ['transformer', 'rnn', 'show_attend_tell'])
def test_every_model_satisfies_the_protocol(name):
  model = models.build_model({'name': name}, 16, 16)
  assert isinstance(model, model_base.Model)
  assert float(model.ctc_weight) == 0.0


def test_every_model_module_is_tested_above():
  have = [n for n in _modules(models)
          if hasattr(importlib.import_module(f'seq2seq_jax.models.{n}'), 'Model')
          and n != 'base']
  assert sorted(have) == ['rnn', 'show_attend_tell', 'transformer']


def test_a_model_without_ctc_head_says_so():
  model = models.build_model({'name': 'show_attend_tell'}, 0, 16)
  with pytest.raises(UserError, match='no CTC head'):
    model.ctc_logits(None)
  with pytest.raises(UserError, match='no setting'):   # not a setting a config can give
    models.build_model({'name': 'show_attend_tell', 'ctc_weight': 0.3}, 0, 16)


# --- the source registry ----------------------------------------------------------------------
def test_unknown_source_is_one_line_naming_the_known_ones():
  with pytest.raises(UserError) as e:
    sources.get('parquet')
  msg = str(e.value)
  assert '\n' not in msg and "'parquet'" in msg
  for name in ('tsv', 'files', 'tfds', 'cmudict', 'num2words', 'pydoc', 'digit_strips',
               'spoken_digits', 'fillets', 'tuxpaint_stamps', 'captions'):
    assert name in msg


def test_a_task_refuses_a_source_it_does_not_read():
  data = ml_collections.ConfigDict(dict(source='pydoc'))
  with pytest.raises(UserError, match=r"data.source must be one of \('tfds', 'files'"):
    sources.select(data, ('tfds', 'files', 'tsv'), 'tsv')
  with pytest.raises(UserError, match='gives path, not pairs'):
    sources.get('digit_strips').read('pairs', data, 'train')


def _tsv_data(tmp_path, **kw):
  for split, lines in (('train', 'a b\tx y\n\n c \t z\n'), ('eval', 'd\tw\n'), ('test', '')):
    (tmp_path / f'{split}.tsv').write_text(lines)
  return ml_collections.ConfigDict(dict(
      source='tsv', bad_pairs='skip', train_tsv=str(tmp_path / 'train.tsv'),
      eval_tsv=str(tmp_path / 'eval.tsv'), test_tsv='', **kw))


def test_tsv_source_read_through_the_registry(tmp_path):
  data = _tsv_data(tmp_path)
  source = sources.select(data, ('tsv', 'files'), 'files')
  assert source.name == 'tsv' and source.keys == ('train_tsv', 'eval_tsv', 'test_tsv')
  stream = source.read('pairs', data, 'train')
  assert list(stream.pairs) == [('a b', 'x y'), ('c', 'z')]
  assert stream.bad.count == 1 and stream.origin == data.train_tsv     # the empty line
  assert source.read('pairs', data, 'validation').read().pairs == [('d', 'w')]
  assert source.read('path', data, 'validation') == data.eval_tsv
  with pytest.raises(UserError, match='data.test_tsv is not set: give --config.data.test_tsv=PATH [(]a TSV'):
    source.read('pairs', data, 'test')


def test_builder_sources_are_chosen_by_their_settings():
  data = ml_collections.ConfigDict(dict(digit_strips=dict(counts=(8, 4, 4))))
  assert sources.select(data, ('tsv', 'digit_strips'), 'tsv').name == 'digit_strips'
  assert sources.select(data, ('tsv',), 'tsv').name == 'tsv'      # not one the task reads
  data.digit_strips = dict(colour='red')
  with pytest.raises(UserError, match=r"data.digit_strips: unknown key\(s\) \['colour'\]"):
    sources.select(data, ('tsv', 'digit_strips'), 'tsv')
  two = ml_collections.ConfigDict(dict(spoken_digits={}, fillets={}))
  with pytest.raises(UserError, match='both set'):
    sources.select(two, ('tsv', 'spoken_digits', 'fillets'), 'tsv')
  two.tfds_name = 'librispeech'            # a TFDS dataset by name wins, as it always did
  assert sources.select(two, ('tsv', 'spoken_digits', 'fillets', 'tfds'), 'tsv').name == 'tfds'
