"""Datasets built into a temporary folder and renamed into place (seq2seq_jax/data/built_dir)."""
import os

import pytest

from seq2seq_jax.data import built_dir


def _write(folder, name, text):
  with open(os.path.join(folder, name), 'w') as f:
    f.write(text)


def test_a_finished_build_is_in_place_and_leaves_no_temporary_folder(tmp_path):
  out = str(tmp_path / 'data' / 'set-1')   # the data dir does not exist yet
  assert not built_dir.is_built(out, 'spec.json')
  with built_dir.building(out, 'spec.json') as tmp:
    assert os.path.dirname(tmp) == os.path.dirname(out) and not os.listdir(tmp)
    assert not built_dir.is_built(out, 'spec.json')  # nothing visible while building
    _write(tmp, 'rows.tsv', 'a\tb\n')
    _write(tmp, 'spec.json', '{}')
  assert built_dir.is_built(out, 'spec.json')
  assert sorted(os.listdir(out)) == ['rows.tsv', 'spec.json']
  assert os.listdir(tmp_path / 'data') == ['set-1']


def test_a_failed_build_leaves_nothing(tmp_path):
  out = str(tmp_path / 'set-1')
  with pytest.raises(KeyError):
    with built_dir.building(out, 'spec.json') as tmp:
      _write(tmp, 'rows.tsv', 'a\tb\n')
      raise KeyError('interrupted')
  assert os.listdir(tmp_path) == []
  with pytest.raises(RuntimeError, match='without writing spec.json'):
    with built_dir.building(out, 'spec.json') as tmp:
      _write(tmp, 'rows.tsv', 'a\tb\n')  # forgot the marker: not a complete dataset
  assert os.listdir(tmp_path) == []


def test_when_two_builders_race_the_first_copy_stays(tmp_path):
  out = str(tmp_path / 'set-1')
  with built_dir.building(out, 'spec.json') as slow:
    _write(slow, 'spec.json', 'second')
    with built_dir.building(out, 'spec.json') as fast:  # finishes first
      _write(fast, 'spec.json', 'first')
  with open(os.path.join(out, 'spec.json')) as f:
    assert f.read() == 'first'
  assert os.listdir(tmp_path) == ['set-1']
