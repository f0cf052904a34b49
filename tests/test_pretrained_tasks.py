"""model.pretrained on the translation and summarization tasks: tiny Marian, BART and T5
checkpoints in Hugging Face's layout with real tokenizer files (tests/fixtures/marian/hf_c,
hf_d, bart/hf_b, t5/hf_d), through launch.py in process; and a fine-tuned one killed and
resumed.

The references are transformers' (tools/make_pretrained_text_fixtures.py, text_*.json): its
tokenizers' ids for the fixture's texts, its greedy generate() outputs and their decoded text.
`--mode=predict` must print exactly that text, so the tokenizer, the token permutation, the
decoder's start token, BART's forced <s>, T5's task prefix (data.source_prefix) and the search
are checked end to end against an independent implementation. Nothing here imports PyTorch.
"""
import json
import os
import shutil

import numpy as np
import pytest

from seq2seq_jax.data.vocab import EOS_ID
from seq2seq_jax.pretrained import checkpoints
from seq2seq_jax.pretrained import text_tokens
from seq2seq_jax.trainer import inference

import runs  # tests/runs.py

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
# (family, tag, task): Marian c one vocabulary, Marian d separate source and target
# vocabularies (SentencePiece + vocab.json), BART b a byte-level BPE (tokenizer.json) with a
# forced <s>, T5 d (v1.1: no biases, its own lm_head, relative positions) a SentencePiece
# unigram (tokenizer.json, spiece.model) with a task prefix.
CASES = [('marian', 'c', 'translation'), ('marian', 'd', 'translation'),
         ('bart', 'b', 'summarization'), ('t5', 'd', 'translation')]
# Their files other than tokenizer.json that a tokenizer is read from too.
WITHOUT_TOKENIZER_JSON = {'bart': 'vocab.json + merges.txt', 't5': 'spiece.model'}
EXPERIMENTS = {'translation': 'ddtp_enfr_transformer.py:tsv_pretrained',
               'summarization': 'pydoc_summarization.py:tsv_pretrained'}
MAX_NEW = 12   # the references' max_new_tokens


def _ref(family: str, tag: str) -> dict:
  with open(os.path.join(FIXTURES, family, f'text_{tag}.json')) as f:
    return json.load(f)


def _tokens(directory: str, source_prefix: str = '') -> text_tokens.TextTokens:
  ckpt = checkpoints.load(directory)
  return text_tokens.TextTokens(ckpt.directory, ckpt.config_json, ckpt.src_vocab_size,
                                ckpt.vocab_size, source_prefix)


def _prefix(ref: dict) -> tuple[str, ...]:
  """The reference's task prefix as a command-line setting (none without one)."""
  prefix = ref.get('source_prefix', '')
  return (f'--config.data.source_prefix={prefix}',) if prefix else ()


def _args(task: str, ckpt: str, root, *extra: str) -> tuple[str, ...]:
  """A run on root/{train,dev,test}.tsv, greedy with the references' length limit."""
  return (f'--config={os.path.join(runs.ROOT, "experiments", EXPERIMENTS[task])}',
          f'--config.model.pretrained={ckpt}', '--config.mesh.data=1',
          f'--config.data.train_tsv={root / "train.tsv"}',
          f'--config.data.eval_tsv={root / "dev.tsv"}',
          f'--config.data.test_tsv={root / "test.tsv"}', '--config.decode.beam_size=1',
          f'--config.decode.max_len={MAX_NEW}', '--config.batch_size=4',
          '--config.data.eval_batch_size=4',
          *(('--config.data.max_source_len=40', '--config.data.buckets=(16,41)',
              '--config.data.max_target_len=16')
            if task == 'summarization' else ()),   # (BART b has 64 positions)
          *extra)


def _write_tsvs(root, ref: dict) -> None:
  """The fixture's texts with the checkpoint's own outputs as references (train: all four,
  four times over, so that they fill packed batches; validation and test: two each)."""
  rows = list(zip(ref['texts'], ref['decoded']))
  for name, part in (('train', rows * 4), ('dev', rows[:2]), ('test', rows[2:])):
    (root / f'{name}.tsv').write_text(''.join(f'{s}\t{t.strip()}\n' for s, t in part))


@pytest.mark.parametrize('family,tag,_', CASES)
def test_tokenizers_give_transformers_ids_and_text(family, tag, _, tmp_path):
  """Sources and targets as transformers' tokenizers write them (special tokens included),
  and its greedy outputs decoded to its text; BART also from vocab.json + merges.txt alone,
  T5 from spiece.model alone."""
  ref = _ref(family, tag)
  prefix = ref.get('source_prefix', '')
  directory = os.path.join(FIXTURES, family, f'hf_{tag}')
  readers = [_tokens(directory, prefix)]
  if family in WITHOUT_TOKENIZER_JSON:
    bare = tmp_path / 'no_tokenizer_json'
    shutil.copytree(directory, bare)
    os.remove(bare / 'tokenizer.json')
    readers.append(_tokens(str(bare), prefix))
    assert 'tokenizer.json' not in ' '.join(readers[1].files)   # read from the others
  for tokens in readers:
    for text, want in zip(ref['texts'], ref['input_ids']):
      ids, _ = tokens.encode_source(text)
      assert list(tokens.src_to_model[ids]) + [tokens.src_to_model[EOS_ID]] == want
    for text, want in zip(ref['targets'], ref['labels']):
      ids = tokens.encode_target(text)
      assert list(tokens.to_model[ids]) + [tokens.to_model[EOS_ID]] == want
    for out, want in zip(ref['greedy'], ref['decoded']):
      assert tokens.decode(np.argsort(tokens.to_model)[out]) == want
  # The references exercise what they should: an unknown piece (Marian), differing outputs.
  assert len(set(ref['decoded'])) > 2 and all(ref['decoded'])
  if family == 'marian':
    unk = readers[0].source.unk
    assert any(unk in ids for ids in ref['input_ids'])
    assert readers[0].encode_source(ref['texts'][2])[1] > 0       # counted as unknown


@pytest.mark.parametrize('family,tag,task', CASES)
def test_pretrained_predicts_transformers_greedy_text_and_evaluates(family, tag, task,
                                                                    tmp_path):
  ref = _ref(family, tag)
  ckpt = os.path.join(FIXTURES, family, f'hf_{tag}')
  _write_tsvs(tmp_path, ref)
  work = tmp_path / 'zero_shot'
  code, out, err = runs.cli(*_args(task, ckpt, tmp_path, '--mode=predict', f'--workdir={work}',
                                  *_prefix(ref)),
                            stdin=''.join(t + '\n' for t in ref['texts']))
  assert code == 0, err[-3000:]
  assert out.split('\n')[:-1] == ref['decoded']
  assert not work.exists()               # predict writes nothing
  code, out, err = runs.cli(*_args(task, ckpt, tmp_path, '--mode=eval', f'--workdir={work}',
                                  *_prefix(ref)))
  assert code == 0, err[-3000:]
  rows = [json.loads(line) for line in out.splitlines()]
  assert [r['split'] for r in rows] == ['validation', 'test']
  metric = 'chrf' if task == 'translation' else 'rougeL'   # (BLEU: too few 4-grams)
  for r in rows:   # the references are the model's own outputs
    assert r['checkpoint'] == f'pretrained ({ckpt})' and r['step'] == 0
    assert r[metric] == pytest.approx(100.0) and np.isfinite(r['loss'])


@pytest.mark.parametrize('override, message', [
    ('--config.model.emb_dim=64', 'the architecture comes from model.pretrained'),
    ('--config.model.pretrained=', 'model.pretrained is empty'),
    ('--config.model.pretrained=' + os.path.join(FIXTURES, 'whisper', 'hf_a'),
     'is a whisper checkpoint'),
])
def test_bad_pretrained_settings_are_one_line(override, message, tmp_path):
  _write_tsvs(tmp_path, _ref('marian', 'c'))
  args = _args('translation', os.path.join(FIXTURES, 'marian', 'hf_c'), tmp_path,
               '--mode=predict', f'--workdir={tmp_path / "run"}', override)
  code, out, err = runs.cli(*args, stdin='The cat.\n')
  lines = err.strip().splitlines()
  assert code == 2 and not out and len(lines) == 1, err
  assert lines[0].startswith('error: ') and message in lines[0], err


# --- fine-tuning, and a SIGKILL in the middle of it -------------------------------------------
STEPS = 8
FINE_TUNE = ('--config.optimizer.warmup_steps=0', '--config.optimizer.learning_rate=1e-2',
             '--config.log_every_steps=1', '--config.checkpoint_every_steps=2',
             f'--config.eval_every_steps={STEPS}', f'--config.train_steps={STEPS}',
             '--config.data.token_cache=False', '--config.data.max_len=32')


@pytest.fixture(scope='module')
def marian_run(tmp_path_factory):
  """Marian c fine-tuned STEPS steps on its own outputs, uninterrupted, in this process."""
  root = tmp_path_factory.mktemp('marian_ft')
  _write_tsvs(root, _ref('marian', 'c'))
  ckpt = os.path.join(FIXTURES, 'marian', 'hf_c')
  args = _args('translation', ckpt, root, *FINE_TUNE)
  code, out, err = runs.cli(*args, f'--workdir={root / "ref"}')
  assert code == 0, (out + err)[-3000:]
  return root, ckpt, args, out


def test_a_run_starts_from_the_pretrained_weights_and_fine_tunes_them(marian_run, tmp_path):
  root, ckpt, args, out = marian_run
  assert 'weights from model.pretrained' in out
  # Learning rate 0: the saved weights are exactly the checkpoint's, in the task's order.
  work = tmp_path / 'lr0'
  code, out, err = runs.cli(*args, f'--workdir={work}', '--config.train_steps=2',
                            '--config.optimizer.learning_rate=0.0')
  assert code == 0, err[-3000:]
  loaded = inference.load(str(work), checkpoint='latest')
  want = checkpoints.params_for_task(ckpt, loaded.run.task)
  for key in ('src_embed', 'output_bias', 'decoder_layers_0'):
    got = loaded.params[key]
    for a, b in zip(jax_leaves(got), jax_leaves(want[key])):
      np.testing.assert_array_equal(np.asarray(a), b)
  # Model id 0 is Marian's <pad> (63), 2 its </s> (0), and 63 holds what was id 2.
  raw = checkpoints.load(ckpt).params['src_embed']['embedding']   # rows 0 and 63 swapped
  emb = np.asarray(loaded.params['src_embed']['embedding'])
  np.testing.assert_array_equal(emb[[0, 2, 63, 5]], raw[[0, 63, 2, 5]])
  # Trained at 1e-2, the loss falls and the weights move.
  losses = runs.losses(str(root / 'ref'))
  assert sorted(losses) == list(range(1, STEPS + 1))
  assert losses[STEPS] < losses[1]
  ref = inference.load(str(root / 'ref'), checkpoint='latest')
  assert ref.step == STEPS
  assert not np.array_equal(np.asarray(ref.params['src_embed']['embedding']), emb)


def jax_leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.leaves(tree)


def test_fine_tuning_killed_by_sigkill_resumes_exactly(marian_run):
  """A launch.py process fine-tuning the Hugging Face checkpoint, SIGKILLed as soon as its
  first checkpoint exists, then rerun: the same losses and final weights as the
  uninterrupted run."""
  root, _, args, _ = marian_run
  work = str(root / 'killed')
  out = runs.kill_at_checkpoint(runs.launch([*args, f'--workdir={work}']), work, 2)
  assert 'weights from model.pretrained' in out
  start = runs.resume([*args, f'--workdir={work}'])
  assert 0 < start < STEPS
  ref, got = runs.losses(str(root / 'ref')), runs.losses(work)
  assert sorted(got) == sorted(ref) == list(range(1, STEPS + 1))
  for step in ref:
    assert got[step] == pytest.approx(ref[step], rel=1e-6, abs=1e-7), step
  a = inference.load(str(root / 'ref'), checkpoint='latest').params
  b = inference.load(work, checkpoint='latest').params
  for x, y in zip(jax_leaves(a), jax_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
