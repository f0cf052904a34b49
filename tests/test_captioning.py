"""The captioning task on tiny images made here: TSV and COCO-JSON captions, word vocabulary,
multi-reference BLEU / CIDEr-D, best checkpoint by CIDEr, predict, bad input."""
import json
import os
import textwrap

import numpy as np
import pytest
from PIL import Image

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import train
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import captioning

import runs  # tests/runs.py

# What each picture shows (a bright quadrant) and two ways people said it.
SCENES = {0: ('a dog on the grass', 'the dog sits on grass'),
          1: ('a cat on a red sofa', 'the cat sleeps on the sofa'),
          2: ('a boat on the sea', 'a small boat at sea'),
          3: ('a bird in the sky', 'the bird flies in the sky')}
STEPS = 12

EXPERIMENT = '''
import ml_collections
from common import mesh_and_rules


def get_config(arg=''):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = 'captioning'
  c.data = dict(DATA, image_root='', image_size=(16, 16), channels=3, vocab_size=24, min_count=2,
                target_len=8, bad_pairs='error', eval_batch_size=8, eval_max_examples=0)
  c.batch_size = 8
  c.train_steps = STEPS
  c.log_every_steps = 4
  c.eval_every_steps = 6
  c.checkpoint_every_steps = 6
  if arg == 'transformer':  # the Transformer captioner: patches + encoder-decoder
    c.model = dict(name='transformer', emb_dim=16, num_heads=2, mlp_dim=32,
                   num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.1, max_len=16,
                   frontend=dict(name='patches', patch_size=4))
  else:
    c.model = dict(name='rnn', emb_dim=16, hidden_dim=8, encoder_layers=1, decoder_layers=1,
                   attention='general', dropout_rate=0.0,
                   frontend=dict(name='cnn', channels=(4, 8)))
  c.label_smoothing = 0.0
  c.optimizer = dict(name='adam', learning_rate=3e-3, schedule='constant', grad_clip_norm=1.0)
  c.decode = dict(beam_size=2, alpha=0.6, max_len=8)
  mesh_and_rules(c)
  return c
'''


def _image(folder, i, scene, rng):
  img = (rng.random((16, 16, 3)) * 60).astype(np.uint8)
  r, c = divmod(scene, 2)
  img[8 * r:8 * r + 8, 8 * c:8 * c + 8] = 255
  name = f'img{i}.png'
  Image.fromarray(img).save(os.path.join(folder, name))
  return name


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('captions'))
  rng = np.random.default_rng(0)
  names = [(_image(folder, i, i % 4, rng), i % 4) for i in range(20)]
  with open(os.path.join(folder, 'train.tsv'), 'w') as f:  # two lines per image
    for name, s in names[:12]:
      f.writelines(f'{name}\t{c}\n' for c in SCENES[s])
    f.write(f'{names[0][0]}\ta dog with a ball\n')  # 'with', 'ball': once, below min_count
  coco = {'images': [{'id': 100 + i, 'file_name': n} for i, (n, _) in enumerate(names[12:16])],
          'annotations': [{'image_id': 100 + i, 'caption': c.capitalize() + '.'}
                          for i, (_, s) in enumerate(names[12:16]) for c in SCENES[s]]}
  with open(os.path.join(folder, 'val.json'), 'w') as f:
    json.dump(coco, f)
  with open(os.path.join(folder, 'test.tsv'), 'w') as f:
    for name, s in names[16:]:
      f.write(f'{name}\t{SCENES[s][0]}\n')
  data = dict(train_captions=os.path.join(folder, 'train.tsv'),
              eval_captions=os.path.join(folder, 'val.json'),
              test_captions=os.path.join(folder, 'test.tsv'))
  path = os.path.join(folder, 'captions_experiment.py')
  with open(path, 'w') as f:
    f.write(f'DATA = {data!r}\nSTEPS = {STEPS}\n' + textwrap.dedent(EXPERIMENT))
  return {'folder': folder, 'config': path, 'data': data, 'test_images': [
      os.path.join(folder, n) for n, _ in names[16:]]}


def _config(dataset, variant='', mesh=(2, 1, 1), **data):
  c = config_lib.load_config(f"{dataset['config']}:{variant}", [
      (f'mesh.{k}', str(n)) for k, n in zip(('data', 'fsdp', 'tensor'), mesh)])
  with c.unlocked():
    c.data.update(data)
  return c


def test_train_eval_predict_on_two_batch_shards(dataset, tmp_path):
  workdir = str(tmp_path / 'run')
  summary = train.train(_config(dataset), workdir)
  assert summary['best_metric'] == 'cider'
  for k in ('bleu1', 'bleu2', 'bleu3', 'bleu4'):
    assert 0 <= summary[f'test/{k}'] <= 100
  assert summary['test/cider'] >= 0 and summary['test/examples'] == 4
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  evals = [r for r in rows if 'eval/cider' in r]
  assert [r['step'] for r in evals] == [6, 12]
  best = max(evals, key=lambda r: r['eval/cider'])  # ties keep the first
  assert f'(step {best["step"]}, validation cider' in summary['checkpoint']
  losses = [r['train/loss'] for r in rows if 'train/loss' in r]
  assert losses[-1] < losses[0]
  # The vocabulary: words of the training captions seen >= 2 times, most frequent first.
  words = open(os.path.join(workdir, 'vocab.txt')).read().split()
  assert words[:2] == ['the', 'a'] and 'dog' in words and 'ball' not in words
  out = list(train.predict(_config(dataset), workdir,
                           [dataset['test_images'][0], '', dataset['test_images'][1]]))
  assert len(out) == 3 and out[1] == ''
  assert all(set(o.split()) <= set(words) | {'<unk>'} for o in out)


def test_transformer_captioner_on_the_mesh(dataset, tmp_path):
  """The Transformer captioner trains, evaluates and predicts on the (2, 2, 2) mesh. (Killed
  and resumed runs: tests/test_launch.py, test_translation_e2e.py.)"""
  ref_dir = str(tmp_path / 'mesh')
  config = _config(dataset, 'transformer', mesh=(2, 2, 2))
  config.log_every_steps = 1  # a logged loss is the mean since the last log: log every step
  summary = train.train(config, ref_dir)
  assert summary['best_metric'] == 'cider' and summary['test/examples'] == 4
  assert 0 <= summary['test/bleu4'] <= 100 and summary['test/cider'] >= 0
  ref = runs.losses(ref_dir)
  assert sorted(ref) == list(range(1, STEPS + 1)) and ref[STEPS] < ref[1], ref
  out = list(train.predict(_config(dataset, 'transformer', mesh=(1, 1, 1)), ref_dir,
                           [dataset['test_images'][0], '', dataset['test_images'][1]]))
  assert len(out) == 3 and out[1] == ''
  words = set(open(os.path.join(ref_dir, 'vocab.txt')).read().split())
  assert all(set(o.split()) <= words | {'<unk>'} for o in out)



def test_bad_captions_and_images_are_named(dataset, tmp_path):
  folder = dataset['folder']
  broken = os.path.join(folder, 'broken.png')
  with open(broken, 'wb') as f:
    f.write(b'not a png')
  bad_tsv = tmp_path / 'bad.tsv'
  bad_tsv.write_text('img0.png\ta dog\nmissing.png\ta cat\nbroken.png\ta boat\n')
  task = captioning.Task(_config(dataset, train_captions=str(bad_tsv), image_root=folder))
  with pytest.raises(UserError, match=r'bad\.tsv:2: cannot read .*missing\.png'):
    task.train_data()
  task = captioning.Task(_config(dataset, train_captions=str(bad_tsv), image_root=folder,
                                 bad_pairs='skip'))
  lines = task._read_split('train')
  assert [os.path.basename(p) for p, _ in lines] == ['img0.png']
  (tmp_path / 'notab.tsv').write_text('img0.png\ta dog\nno tab here\n')
  task = captioning.Task(_config(dataset, train_captions=str(tmp_path / 'notab.tsv'),
                                 image_root=folder))
  with pytest.raises(UserError, match=r'notab\.tsv:2: no TAB'):
    task.train_data()
  bad_json = tmp_path / 'bad.json'
  bad_json.write_text(json.dumps({'images': [{'id': 1, 'file_name': 'img0.png'}],
                                  'annotations': [{'image_id': 2, 'caption': 'x'}]}))
  task = captioning.Task(_config(dataset, eval_captions=str(bad_json), image_root=folder))
  with pytest.raises(UserError, match=r'annotations\[0\]: image_id 2 is not in images'):
    task.train_data()
  (tmp_path / 'junk.json').write_text('[1, 2]')
  task = captioning.Task(_config(dataset, eval_captions=str(tmp_path / 'junk.json')))
  with pytest.raises(UserError, match='not a COCO captions file'):
    task.train_data()
  with pytest.raises(UserError, match='vocab_size must be'):
    captioning.Task(_config(dataset, vocab_size=3))


def test_show_attend_tell_trains_predicts_and_draws_attention(dataset, tmp_path):
  """Show-Attend-Tell through the launcher's code path; --attention_maps writes one figure
  per image (input + one panel per output word) and never overwrites one."""
  config = _config(dataset)
  config.model = dict(name='show_attend_tell', emb_dim=16, hidden_dim=16, context_dim=8,
                      attention_layers=2, init_layers=2, frontend=dict(name='cnn', channels=(4, 8)),
                      dropout_rate=0.0,
                      doubly_stochastic=1.0)
  workdir = str(tmp_path / 'sat')
  summary = train.train(config, workdir)
  assert summary['best_metric'] == 'cider' and summary['test/examples'] == 4
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  train_rows = [r for r in rows if 'train/loss' in r]
  # The penalty is in the loss and not in the NLL.
  assert all(r['train/loss'] > r['train/nll'] for r in train_rows)
  assert train_rows[-1]['train/loss'] < train_rows[0]['train/loss']
  maps = str(tmp_path / 'maps')
  lines = [dataset['test_images'][0], '', dataset['test_images'][1]]
  out = list(train.predict(config, workdir, lines, attention_maps=maps))
  assert len(out) == 3 and out[1] == ''
  files = sorted(os.listdir(maps))
  assert files == ['00000_img16.png', '00002_img17.png']
  for name, caption in zip(files, (out[0], out[2])):
    with Image.open(os.path.join(maps, name)) as im:
      w, h = im.size
    panels = 1 + len(caption.split())
    assert w == min(5, panels) * (96 + 4) and h == -(-panels // 5) * (96 + 14 + 4)
  before = os.path.getmtime(os.path.join(maps, files[0]))
  with pytest.raises(UserError, match='exists: choose another --attention_maps'):
    list(train.predict(config, workdir, lines, attention_maps=maps))
  assert os.path.getmtime(os.path.join(maps, files[0])) == before


def _tiny_coco_tfds(dataset, data_dir):
  """coco_captions' layout (image, image/filename, image/id, captions: {id, text}) as a TFDS
  array_record dataset, built here from the fixture's pictures and captions."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  folder = dataset['folder']

  def rows(path):
    by_image = {}
    for image, caption, _ in captioning.read_captions(path, folder, lambda *a: None):
      by_image.setdefault(image, []).append(caption)
    return list(by_image.items())

  class TinyCocoCaptions(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.1.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'captions': tfds.features.Sequence({'id': np.int64, 'text': tfds.features.Text()}),
          'image': tfds.features.Image(encoding_format='png'),
          'image/filename': tfds.features.Text(), 'image/id': np.int64}))

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(dataset['data'][key]) for split, key in
              (('train', 'train_captions'), ('val', 'eval_captions'),
               ('test', 'test_captions'))}

    def _generate_examples(self, path):
      for i, (image, caps) in enumerate(rows(path)):
        with open(image, 'rb') as f:
          yield i, {'image': f.read(), 'image/filename': os.path.basename(image),
                    'image/id': i, 'captions': [{'id': 10 * i + j, 'text': c}
                                                for j, c in enumerate(caps)]}

  TinyCocoCaptions(data_dir=data_dir, file_format='array_record').download_and_prepare()


@pytest.mark.parametrize('cache_images', [True, False])
def test_tfds_coco_captions_reader_matches_the_files(dataset, tmp_path_factory, cache_images):
  """The same pictures and captions read from a coco_captions-style TFDS dataset (decoded
  up front or lazily per batch) give the examples and batches the files give."""
  data_dir = str(tmp_path_factory.getbasetemp() / 'tfds_coco')
  if not os.path.isdir(os.path.join(data_dir, 'tiny_coco_captions')):
    _tiny_coco_tfds(dataset, data_dir)
  from_files = captioning.Task(_config(dataset))
  from_tfds = captioning.Task(_config(dataset, tfds_name='tiny_coco_captions', data_dir=data_dir,
                                      train_split='train', eval_split='val',
                                      cache_images=cache_images))
  for task in (from_files, from_tfds):
    task.setup(str(tmp_path_factory.mktemp('w')))
  assert from_tfds.vocab.symbols == from_files.vocab.symbols
  a_src, a_tgt = from_files.train_data()
  b_src, b_tgt = from_tfds.train_data()
  assert len(b_src) == len(a_src) == 25
  assert all(isinstance(x, captioning.LazyImage) != cache_images for x in b_src)
  # TFDS stores records in its own (hashed) order: compare the examples as multisets.
  pairs = lambda src, tgt: sorted((t.tobytes(), np.asarray(x).tobytes())
                                  for x, t in zip(src, tgt))
  assert pairs(a_src, a_tgt) == pairs(b_src, b_tgt)
  lazy_files = captioning.Task(_config(dataset, cache_images=cache_images))
  lazy_files.setup(str(tmp_path_factory.mktemp('w')))
  c_src, c_tgt = lazy_files.train_data()
  assert all(isinstance(x, captioning.LazyImage) != cache_images for x in c_src)
  assert pairs(a_src, a_tgt) == pairs(c_src, c_tgt)
  batch = lambda task, ex: task.make_batcher(*ex, batch_size=8, seed=0, shuffle=True
                                             ).get_batch(3)
  a, b = batch(from_files, (a_src, a_tgt)), batch(from_tfds, (b_src, b_tgt))
  assert {k: (v.shape, v.dtype) for k, v in a.items()} == {
      k: (v.shape, v.dtype) for k, v in b.items()}
  val = from_tfds.eval_set('validation')
  assert len(val.sources) == 4 and all(len(r) == 2 for r in val.references)
  with pytest.raises(UserError, match='not prepared .*tfds build no_such_captions'):
    captioning.Task(_config(dataset, tfds_name='no_such_captions',
                            data_dir=data_dir))._read_split('train')


def test_ids_past_the_training_words_decode_as_unk(dataset, tmp_path):
  """The table has vocab_size entries, more than the words counted: an untrained model may
  emit an unused id, which must read as <unk>, not crash the evaluation."""
  task = captioning.Task(_config(dataset))
  task.setup(str(tmp_path))
  words = len(task.vocab.symbols)
  assert words + 4 < task.tgt_vocab_size
  assert task.decode_target([4, task.tgt_vocab_size - 1, 2, 5]) == (
      f'{task.vocab.symbols[0]} <unk>')
