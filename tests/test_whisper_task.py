"""model.pretrained on the speech task: a tiny random Whisper (tests/fixtures/whisper/ct2_a,
CTranslate2's layout) evaluated, transcribing and fine-tuned through launch.py, in process.

The transcripts of `--mode=predict` must be the greedy Transcriber's (pretrained/whisper.py,
Whisper's own token ids, checked against transformers' logits in test_whisper.py), so the
token permutation, the prompt and the suppression of the speech task's path are checked
against an independent implementation.
"""
import json
import os
import shutil

import numpy as np
import pytest
import soundfile

from seq2seq_jax.pretrained import checkpoints
from seq2seq_jax.pretrained import whisper
from seq2seq_jax.trainer import inference

import runs  # tests/runs.py

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'whisper')
EXPERIMENT = os.path.join(runs.ROOT, 'experiments', 'whisper_zero_shot.py')
# The fixture's decoder has 32 positions: the Transcriber's limit is min(32 / 2, 32 - 4) = 16
# new tokens, ours the 3 prompt tokens after BOS and those 16.
MAX_LEN = 3 + 16


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """A checkpoint directory, six short recordings, their greedy transcripts, and TSVs whose
  references are those transcripts (train: the first four; validation, test: two each)."""
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('whisper_task')
  ckpt = root / 'ckpt'
  ckpt.mkdir()
  # Hugging Face's layout: the random model of hf_a with its cross-attention outputs scaled
  # by 20, so that its transcripts depend on the audio (the fixture's own write one token
  # over and over for any input).
  tensors = load_file(os.path.join(FIXTURES, 'hf_a', 'model.safetensors'))
  save_file({k: v * 20 if 'encoder_attn.out_proj.weight' in k else v
             for k, v in tensors.items()}, str(ckpt / 'model.safetensors'))
  shutil.copy(os.path.join(FIXTURES, 'tokenizer.json'), ckpt / 'tokenizer.json')
  # Suppressions that touch the permuted ids: '"' (Whisper id 1, whose slot is BOS's) and w5
  # every step, <|endoftext|> (87) at the first.
  config_json = json.load(open(os.path.join(FIXTURES, 'hf_a', 'config.json')))
  config_json.update(suppress_tokens=[1, 5], begin_suppress_tokens=[87])
  (ckpt / 'config.json').write_text(json.dumps(config_json))
  rng = np.random.default_rng(7)
  paths = []
  for i in range(6):
    n = 16000 - 1500 * i
    t = np.arange(n) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t) + rng.normal(0, 0.05, n)
    path = root / f'u{i}.wav'
    soundfile.write(path, wave.astype(np.float32), 16000)
    paths.append(str(path))
  config, params, _ = whisper.load_hf(str(ckpt))
  tr = whisper.Transcriber(config, params, config_json, str(ckpt / 'tokenizer.json'))
  waves = [soundfile.read(p, dtype='float32')[0] for p in paths]
  batch = np.stack([np.pad(w, (0, 16000 - len(w))) for w in waves])
  texts = tr.transcribe(batch, np.array([len(w) for w in waves]))
  for name, rows in (('train', range(4)), ('dev', range(2, 4)), ('test', range(4, 6))):
    (root / f'{name}.tsv').write_text(''.join(f'{paths[i]}\t{texts[i]}\n' for i in rows))
  return root, str(ckpt), paths, texts


def _args(root, ckpt, *extra):
  return ('--config=' + EXPERIMENT, f'--config.model.pretrained={ckpt}',
          f'--config.data.train_tsv={root / "train.tsv"}',
          f'--config.data.eval_tsv={root / "dev.tsv"}',
          f'--config.data.test_tsv={root / "test.tsv"}',
          f'--config.decode.max_len={MAX_LEN}', '--config.data.second_buckets=(1.0,)',
          '--config.data.eval_batch_size=4', '--config.batch_size=4', '--config.mesh.data=1',
          '--config.data.max_chars_per_second=0',  # a 1 s window, transcripts of any length
          *extra)


DECODER_ONLY = "--config.optimizer.freeze=('^frontend/','^encoder_')"
TUNE = ('--config.train_steps=2', '--config.eval_every_steps=2',
        '--config.checkpoint_every_steps=1', '--config.optimizer.warmup_steps=0',
        '--config.optimizer.learning_rate=1e-2')


@pytest.fixture(scope='module')
def decoder_run(setup):
  """The pretrained model fine-tuned 2 steps at learning rate 1e-2 with its frontend and
  encoder frozen, every step checkpointed, through the whole model (no encoder cache), once
  per module: (workdir, stdout). Read it, never change it."""
  root, ckpt, _, _ = setup
  work = root / 'decoder_run'
  code, out, err = runs.cli(*_args(root, ckpt, f'--workdir={work}', DECODER_ONLY, *TUNE))
  assert code == 0, err
  return work, out


def test_pretrained_whisper_predicts_and_evaluates_with_no_training(setup):
  root, ckpt, paths, texts = setup
  assert all(texts) and len(set(texts)) > 1     # real, differing transcripts to compare
  work = root / 'zero_shot'
  code, out, err = runs.cli(*_args(root, ckpt, '--mode=predict', f'--workdir={work}'),
                            stdin=''.join(p + '\n' for p in paths))
  assert code == 0, err
  assert out.splitlines() == texts
  assert not work.exists()              # predict writes nothing
  code, out, err = runs.cli(*_args(root, ckpt, '--mode=eval', f'--workdir={work}'))
  assert code == 0, err
  rows = [json.loads(line) for line in out.splitlines()]
  assert [r['split'] for r in rows] == ['validation', 'test']
  for r in rows:   # the references are the model's own transcripts
    assert r['checkpoint'] == f'pretrained ({ckpt})' and r['step'] == 0
    assert r['wer'] == 0.0 and r['cer'] == 0.0 and r['accuracy'] == 100.0
    assert r['examples'] == 2 and np.isfinite(r['loss'])



def test_max_tokens_per_second_cuts_transcripts_to_the_audio_length(setup):
  """decode.max_tokens_per_second=1 on 1 s recordings: at most 2 tokens (1 per second plus
  one second's worth) after the prompt, so each transcript is the start of the free one and
  some are shorter; the setting also applies to a run's config.json that lacks it."""
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  root, ckpt, paths, texts = setup
  work = root / 'limited'
  code, out, err = runs.cli(*_args(root, ckpt, '--mode=predict', f'--workdir={work}',
                                   '--config.decode.max_tokens_per_second=1'),
                            stdin=''.join(p + '\n' for p in paths))
  assert code == 0, err
  cut = out.splitlines()
  assert len(cut) == len(texts)
  assert all(t.startswith(c.rstrip()) for c, t in zip(cut, texts)), (cut, texts)
  assert any(len(c) < len(t) for c, t in zip(cut, texts))
  saved = json.loads(config_lib.load_config(EXPERIMENT).to_json_best_effort())
  assert saved['decode'].pop('max_tokens_per_second') == 0.0
  again = config_lib.from_json(saved, [('decode.max_tokens_per_second', '12')])
  assert again.decode.max_tokens_per_second == 12.0

def test_pretrained_whisper_fine_tunes_and_resumes(setup):
  root, ckpt, _, _ = setup
  work = root / 'fine_tune'
  # Learning rate 0 first: the checkpoint saved after training must hold exactly the
  # pretrained weights, in the task's token order.
  common = _args(root, ckpt, f'--workdir={work}', '--config.eval_every_steps=2',
                 '--config.optimizer.warmup_steps=0')
  code, out, err = runs.cli(*common, '--config.train_steps=2',
                            '--config.optimizer.learning_rate=0.0')
  assert code == 0, err
  assert 'weights from model.pretrained' in out
  loaded = inference.load(str(work), checkpoint='latest')
  assert loaded.step == 2
  task = loaded.run.task
  want = checkpoints.params_for_task(ckpt, task)
  emb = np.asarray(loaded.params['tgt_embed']['embedding'])
  np.testing.assert_array_equal(emb, want['tgt_embed']['embedding'])
  np.testing.assert_array_equal(np.asarray(loaded.params['decoder_layers_0']['mlp']['wi']['kernel']),
                                want['decoder_layers_0']['mlp']['wi']['kernel'])
  # PAD's row is Whisper's <|startoflm|> (92), BOS's <|startoftranscript|> (88), EOS's
  # <|endoftext|> (87), and theirs the text tokens '!', '"', '#'.
  raw = checkpoints.load(ckpt).params['tgt_embed']['embedding']
  np.testing.assert_array_equal(emb[[0, 1, 2, 92, 88, 87, 3]], raw[[92, 88, 87, 0, 1, 2, 3]])
  summary = json.loads((work / 'summary.json').read_text())
  assert summary['test/wer'] == 0.0     # unchanged weights: the zero-shot transcripts
  # Then resume with a learning rate: training continues from step 2 and changes weights.
  code, out, err = runs.cli(*common, '--config.train_steps=3',
                            '--config.optimizer.learning_rate=1e-2')
  assert code == 0, err
  assert 'resumed from step 2' in out and 'weights from model.pretrained' not in out
  after = inference.load(str(work), checkpoint='latest')
  assert after.step == 3
  assert not np.array_equal(np.asarray(after.params['tgt_embed']['embedding']), emb)



def test_interpolating_with_the_pretrained_weights_spans_zero_shot_to_fine_tuned(
    setup, decoder_run, capsys):
  """tools/interpolate_pretrained.py: alpha 0 evaluates the pretrained weights (their own
  transcripts are the references: WER 0), alpha 1 the run's checkpoint exactly, and 0.5 is
  neither; --average evaluates the mean of two checkpoints."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  root = setup[0]
  work = decoder_run[0]
  spec = importlib.util.spec_from_file_location(
      'interpolate_pretrained', os.path.join(runs.ROOT, 'tools', 'interpolate_pretrained.py'))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  capsys.readouterr()
  assert tool.main([f'--workdir={work}', '--alphas=0,0.5,1', '--splits=test']) == 0
  rows = {r['alpha']: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
  tuned = inference.load(str(work)).evaluate('test')
  assert rows[0.0]['wer'] == 0.0 and tuned['wer'] > 0.0
  assert rows[1.0]['loss'] == pytest.approx(tuned['loss'], abs=1e-4)
  assert rows[1.0]['wer'] == pytest.approx(tuned['wer'], abs=1e-4)
  assert rows[0.5]['loss'] not in (pytest.approx(rows[0.0]['loss'], abs=1e-4),
                                   pytest.approx(rows[1.0]['loss'], abs=1e-4))
  # --average: the mean of the checkpoints of steps 1 and 2, neither of them.
  assert tool.main([f'--workdir={work}', '--alphas=1', '--splits=test', '--average=1,2']) == 0
  mean = json.loads(capsys.readouterr().out)
  assert mean['checkpoint'] == 'mean of steps 1, 2'
  one = inference.load(str(work), checkpoint=1).evaluate('test')
  assert mean['loss'] not in (pytest.approx(one['loss'], abs=1e-4),
                              pytest.approx(tuned['loss'], abs=1e-4))
  capsys.readouterr()
  assert tool.main([f'--workdir={root / "nowhere"}']) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and len(err.splitlines()) == 1, err

def test_frozen_parameters_keep_their_pretrained_values_with_a_shorter_window(setup):
  """optimizer.freeze: the frontend and encoder stay exactly the checkpoint's while the
  decoder trains; model.frontend.frames=0 (the batch's own window) trains and decodes, with
  SpecAugment and VTLP (training settings a pretrained frontend takes)."""
  root, ckpt, paths, _ = setup
  work = root / 'frozen'
  code, out, err = runs.cli(*_args(root, ckpt, f'--workdir={work}', '--config.train_steps=2',
                                   '--config.eval_every_steps=2',
                                   '--config.optimizer.warmup_steps=0',
                                   '--config.optimizer.learning_rate=1e-2',
                                   '--config.model.frontend.frames=0',
                                   '--config.model.frontend.spec_augment=(2,10,2,20,0.5)',
                                   '--config.model.frontend.vtlp=(0.9,1.1)',
                                   '--config.model.frontend.speed=(0.9,1.1)',
                                   "--config.optimizer.freeze=('^frontend/','^encoder')"))
  assert code == 0, err
  loaded = inference.load(str(work), checkpoint='latest')
  want = checkpoints.params_for_task(ckpt, loaded.run.task)
  frozen = [k for k in want if k.startswith(('frontend', 'encoder'))]
  assert 'frontend' in frozen and any(k.startswith('encoder') for k in frozen), frozen
  flat = lambda tree: {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(v)
                       for path, v in __import__('jax').tree_util.tree_leaves_with_path(tree)}
  got, ref = flat(loaded.params), flat(want)
  for name, value in ref.items():
    if name.startswith(('frontend', 'encoder')):
      np.testing.assert_array_equal(got[name], value, err_msg=name)
  changed = [n for n in ref if not n.startswith(('frontend', 'encoder'))
             and not np.array_equal(got[n], ref[n])]
  assert any(n.startswith('decoder') for n in changed), changed
  # The optimizer keeps no moments for the frozen ones.
  state = loaded.run.abstract_state.opt_state
  assert sum(x.size for x in __import__('jax').tree.leaves(state)) < 3 * sum(
      v.size for n, v in ref.items() if not n.startswith(('frontend', 'encoder')))
  code, out, err = runs.cli('--mode=predict', f'--workdir={work}',
                            stdin=''.join(p + '\n' for p in paths))
  assert code == 0, err
  assert len(out.splitlines()) == len(paths)
  # A --config that leaves the freeze and the augmentation out (the experiment's own, as a
  # user passes it): decoding needs no optimizer, so the run's optimizer state never stands
  # in the way, and training-only frontend settings do not make it another model.
  code, again, err = runs.cli(*_args(root, ckpt, '--mode=predict', f'--workdir={work}',
                                     '--config.model.frontend.frames=0'),
                              stdin=''.join(p + '\n' for p in paths))
  assert code == 0, err
  assert again == out


def test_cached_encoder_outputs_train_the_decoder_exactly_as_the_whole_model_does(
    setup, decoder_run):
  """cache_encoder_outputs=True with the frontend and encoder frozen: the encoder runs once
  over the training set and the steps run the decoder alone on its outputs; the parameters
  after 2 steps equal those of the same run through the whole model. Leaving a part the
  encoder reads trainable, or augmenting its input, is refused in one line."""
  import jax  # pylint: disable=g-import-not-at-top
  root, ckpt, _, _ = setup
  freeze, common = DECODER_ONLY, TUNE
  whole, out = decoder_run
  assert 'encoder cache' not in out
  params = {False: inference.load(str(whole), checkpoint='latest').params}
  work = root / 'cache_True'
  code, out, err = runs.cli(*_args(root, ckpt, f'--workdir={work}', freeze, *common,
                                   '--config.cache_encoder_outputs=True'))
  assert code == 0, err
  assert 'encoder cache: 4 training examples encoded' in out, out
  params[True] = inference.load(str(work), checkpoint='latest').params
  pairs = list(zip(jax.tree_util.tree_leaves_with_path(params[False]),
                   jax.tree.leaves(params[True])))
  before = checkpoints.params_for_task(ckpt, inference.load(str(root / 'cache_True')).run.task)
  moved = 0
  # Equal to float rounding (the encoder's outputs come from another compiled program):
  # a trained parameter moves by about the learning rate, 1e-2, per step; the cross-attention
  # key bias, whose gradient is zero but for rounding, by noise of about 1e-6.
  for (path, a), b in pairs:
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=2e-5,
                               err_msg=jax.tree_util.keystr(path))
  for (path, a), _ in pairs:
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    ref = before
    for k in name.split('/'):
      ref = ref[k]
    moved += not np.array_equal(np.asarray(a), np.asarray(ref))
  assert moved > 0    # the decoder did train
  # The outputs were kept in the workdir: the resumed run reads them (fingerprint matched)
  # instead of encoding again, and trains on from step 2.
  work = root / 'cache_True'
  assert (work / 'encoder_cache' / 'meta.json').exists()
  code, out, err = runs.cli(*_args(root, ckpt, f'--workdir={work}', freeze, *common[1:],
                                   '--config.train_steps=3', '--config.cache_encoder_outputs=True'))
  assert code == 0, err
  assert 'resumed from step 2' in out and 'encoder cache: read from' in out, out
  assert 'training examples encoded' not in out
  assert inference.load(str(work), checkpoint='latest').step == 3
  # Another frontend setting (a shorter window) changes the fingerprint: encoded anew.
  shutil.copytree(work / 'encoder_cache', root / 'cache_frames0' / 'encoder_cache')
  code, out, err = runs.cli(*_args(root, ckpt, f'--workdir={root / "cache_frames0"}', freeze,
                                   *common, '--config.cache_encoder_outputs=True',
                                   '--config.model.frontend.frames=0'))
  assert code == 0, err
  assert 'encoder cache: 4 training examples encoded' in out and 'read from' not in out, out
  for extra, message in (
      (("--config.optimizer.freeze=('^frontend/',)",),
       'needs every parameter the encoder reads frozen'),
      ((freeze, '--config.model.frontend.spec_augment=(2,10,2,20,0.5)'),
       'the encoder computes something else in training')):
    code, out, err = runs.cli(*_args(root, ckpt, f'--workdir={root / "cache_bad"}', *common,
                                     '--config.cache_encoder_outputs=True', *extra))
    assert code == 2 and 'Traceback' not in err
    errors = [l for l in err.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1 and message in errors[0], err
    assert not (root / 'cache_bad' / 'checkpoints').exists() or not os.listdir(
        root / 'cache_bad' / 'checkpoints')


def test_a_shorter_window_is_the_first_frames_of_the_full_one():
  """whisper_conv with frames=0 reads the batch's own length: its log-mel is the first frames
  of the 30 s window's, and its encoder context that length / 2."""
  import jax  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models.frontends import whisper_conv  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  waves = rng.normal(0, 0.1, (2, 8000)).astype(np.float32)
  mask = np.ones_like(waves, bool)
  mask[1, 6000:] = False
  short = whisper_conv.WhisperConv(features=8, frames=0)
  full = whisper_conv.WhisperConv(features=8, frames=3000)
  a, b = short.log_mel(waves, mask), full.log_mel(waves, mask)
  assert a.shape == (2, 50, 80) and b.shape == (2, 3000, 80)
  np.testing.assert_allclose(a, b[:, :50], atol=1e-6)
  assert float(np.abs(b[:, 50:]).max()) == 0.0
  params = short.init(jax.random.key(0), waves, mask)
  out, out_mask = short.apply(params, waves, mask)
  assert out.shape == (2, 25, 8) and out_mask.shape == (2, 25)


def test_spec_augment_masks_the_segment_in_training_only():
  """whisper_conv's spec_augment zeroes whole mel bins and whole frames of the segment (never
  the window's padding beyond it), differently per row; outside training the frontend
  computes exactly what it does without it."""
  import jax  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models.frontends import whisper_conv  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(4)
  waves = rng.normal(0, 0.1, (2, 16000)).astype(np.float32)
  mask = np.ones_like(waves, bool)
  mask[1, 9600:] = False                                 # row 1: 60 frames of 100
  plain = whisper_conv.WhisperConv(features=8, frames=0)
  aug = whisper_conv.WhisperConv(features=8, frames=0, spec_augment=(2, 20, 2, 30, 1.0))
  x = np.asarray(aug.log_mel(waves, mask))
  masked = [np.asarray(aug.apply({}, jax.random.key(s), x, waves, mask, method='augment'))
            for s in range(4)]
  for y in masked:
    assert np.all((y == x) | (y == 0))
    for row, frames in ((0, 100), (1, 60)):
      gone = (y[row] == 0) & (x[row] != 0)
      bins = np.all(y[row, :frames] == 0, axis=0)
      times = np.all(y[row] == 0, axis=1) & np.any(x[row] != 0, axis=1)
      assert np.all(gone <= (bins[None, :] | times[:, None])), 'only whole bins and frames'
      assert not times[frames:].any(), 'the padding is not the segment'
  assert any((m[0] == 0).sum() > (x[0] == 0).sum() for m in masked)
  bins_of = lambda m, row: np.all(m[row, :60] == 0, axis=0)
  assert any(not np.array_equal(bins_of(m, 0), bins_of(m, 1)) for m in masked), \
      'rows draw their own masks'
  params = plain.init(jax.random.key(0), waves, mask)
  want = plain.apply(params, waves, mask)[0]
  np.testing.assert_array_equal(aug.apply(params, waves, mask)[0], want)
  trained = aug.apply(params, waves, mask, train=True, rngs={'dropout': jax.random.key(1)})[0]
  assert not np.allclose(trained, want)



def _in_training_only(noise, mask, **setting):
  """whisper_conv with a training setting computes exactly what it does without it outside
  training; in training it changes the output, each row by its own draw."""
  import jax  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models.frontends import whisper_conv  # pylint: disable=g-import-not-at-top
  base = whisper_conv.WhisperConv(features=8, frames=0)
  aug = whisper_conv.WhisperConv(features=8, frames=0, **setting)
  params = base.init(jax.random.key(0), noise, mask)
  want = np.asarray(base.apply(params, noise, mask)[0])
  np.testing.assert_array_equal(aug.apply(params, noise, mask)[0], want)
  got = np.asarray(aug.apply(params, np.stack([noise[0]] * 2), mask, train=True,
                             rngs={'dropout': jax.random.key(1)})[0])
  assert not np.allclose(got[0], want[0]) and not np.allclose(got[0], got[1]), \
      'rows draw their own factors'


def test_vtlp_moves_a_tone_to_the_warped_mel_bin_in_training_only():
  """whisper_conv's vtlp: with factor 1 the warped filters are Whisper's own (the log-mel is
  unchanged); with factor 1.2 a 1 kHz tone's energy peaks in the mel bin of 1.2 kHz; each row
  draws its own factor in training; outside training the frontend computes exactly what it
  does without it."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models import audio  # pylint: disable=g-import-not-at-top
  t = np.arange(16000) / 16000
  waves = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2).astype(np.float32) * 0.1
  lengths = np.array([16000, 16000])
  plain = np.asarray(audio.whisper_log_mel(waves, lengths, frames=100))
  same = np.asarray(audio.whisper_log_mel(waves, lengths, frames=100, warp=jnp.ones(2)))
  np.testing.assert_allclose(same, plain, atol=1e-5)
  warped = np.asarray(audio.whisper_log_mel(waves, lengths, frames=100,
                                            warp=jnp.array([1.0, 1.2])))
  bank = audio.slaney_mel_filterbank(80)
  freqs = np.fft.rfftfreq(400, 1 / 16000)
  bin_of = lambda hz: int(np.argmax(bank[np.argmin(np.abs(freqs - hz))]))
  peak = lambda x: int(np.bincount(np.argmax(x[10:90], axis=-1)).argmax())
  assert peak(warped[0]) == bin_of(1000) and peak(plain[0]) == bin_of(1000)
  assert peak(warped[1]) == bin_of(1200) != bin_of(1000)
  mask = np.ones_like(waves, bool)
  noise = np.random.default_rng(5).normal(0, 0.1, waves.shape).astype(np.float32)
  _in_training_only(noise, mask, vtlp=(0.8, 1.2))


def test_speed_perturbation_plays_each_row_faster_or_slower_in_training_only():
  """whisper_conv's speed: a 1 kHz tone played at 1.25 is a 1.25 kHz tone of n / 1.25 samples
  (zeros after); at 0.8 a row grows only as far as its buffer holds; factor 1 changes
  nothing; each row draws its own factor in training; outside training the frontend computes
  exactly what it does without it."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models import audio  # pylint: disable=g-import-not-at-top
  n = 16000
  t = np.arange(n) / 16000
  tone = (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
  waves = np.stack([tone, tone, np.pad(tone[:8000], (0, 8000))])
  lengths = np.array([n, n, 8000])
  out, new = audio.speed_perturb(jnp.asarray(waves), lengths, jnp.array([1.0, 1.25, 0.8]))
  out, new = np.asarray(out), np.asarray(new)
  np.testing.assert_array_equal(new, [n, int(n / 1.25), 10000])
  np.testing.assert_allclose(out[0], tone, atol=1e-7)
  assert not out[1, new[1]:].any() and not out[2, new[2]:].any()
  spectrum = lambda x: np.abs(np.fft.rfft(x))
  peak_hz = lambda x: np.argmax(spectrum(x)) * 16000 / len(x)
  assert abs(peak_hz(out[1, :new[1]]) - 1250) < 2 and abs(peak_hz(out[2, :new[2]]) - 800) < 2
  capped, cap_len = audio.speed_perturb(jnp.asarray(waves[:1]), lengths[:1], jnp.array([0.8]))
  assert int(cap_len[0]) == n, 'a full buffer is not slowed down past its end'
  np.testing.assert_allclose(np.asarray(capped)[0], tone, atol=1e-7)
  mask = np.ones((2, n), bool)
  noise = np.random.default_rng(5).normal(0, 0.1, (2, n)).astype(np.float32)
  noise[:, 12000:] = 0
  mask[:, 12000:] = False
  _in_training_only(noise, mask, speed=(0.9, 1.1))


@pytest.mark.parametrize('override, message', [
    ('--config.model.pretrained=/no/such/dir', "model.pretrained='/no/such/dir': no such"),
    ('--config.model.pretrained=no-such-whisper-package', 'no installed package'),
    ('--config.decode.language=xx', "decode.language='xx' is not a language"),
    ('--config.model.emb_dim=64', 'the architecture comes from model.pretrained'),
    ('--config.model.frontend.frames=4000', 'reads at most its own window (100 frames)'),
    ('--config.model.frontend.frames=7', 'frames even'),
    ('--config.model.frontend.vtlp=(1.2,0.8)', 'model.frontend.vtlp must be (low, high)'),
    ('--config.model.frontend.speed=(0,1.1)', 'model.frontend.speed must be (low, high)'),
    ("--config.optimizer.freeze=('^nothing',)", "'^nothing' matches no parameter"),
])
def test_bad_pretrained_settings_are_one_line(setup, override, message):
  root, ckpt, paths, _ = setup
  code, out, err = runs.cli(*_args(root, ckpt, '--mode=predict', f'--workdir={root / "bad"}',
                                   override), stdin=paths[0] + '\n')
  assert code == 2 and not out
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], err


def test_a_package_shipping_model_bin_in_parts_is_joined_once(tmp_path, monkeypatch):
  """model.pretrained=NAME-part1: the installed package's model.bin.part1 and the part2 of
  NAME-part2, joined into the cache with the package's other files."""
  site = tmp_path / 'site'
  blob = os.urandom(3000)
  for n, chunk in ((1, blob[:1800]), (2, blob[1800:])):
    pkg = f'fakewhisper_part{n}'
    data = site / pkg / 'data'
    data.mkdir(parents=True)
    (data / f'model.bin.part{n}').write_bytes(chunk)
    files = [f'{pkg}/data/model.bin.part{n}']
    if n == 1:
      (data / 'config.json').write_text('{"suppress_ids": []}')
      (data / 'tokenizer.json').write_text('{}')
      files += [f'{pkg}/data/config.json', f'{pkg}/data/tokenizer.json']
    info = site / f'{pkg}-1.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: fakewhisper-part{n}\n'
                                   'Version: 1.0\n')
    (info / 'RECORD').write_text(''.join(f'{f},,\n' for f in files))
  monkeypatch.syspath_prepend(str(site))
  monkeypatch.setenv('SEQ2SEQ_JAX_CACHE', str(tmp_path / 'cache'))
  folder = checkpoints.resolve('fakewhisper-part1')
  assert folder == str(tmp_path / 'cache' / 'pretrained' / 'fakewhisper-1.0')
  assert open(os.path.join(folder, 'model.bin'), 'rb').read() == blob
  assert sorted(os.listdir(folder)) == ['config.json', 'model.bin', 'tokenizer.json']
  stamp = os.stat(os.path.join(folder, 'model.bin')).st_mtime_ns
  assert checkpoints.resolve('fakewhisper-part1') == folder      # joined once
  assert os.stat(os.path.join(folder, 'model.bin')).st_mtime_ns == stamp
