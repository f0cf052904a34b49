"""Machine translation end to end through launch.py (the offline num2words experiment): packed
batches trained, evaluated with BLEU, predicted from, and killed and resumed; and the paper
configurations' sizes without their data."""
import json
import os
import shutil

import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import train

import runs  # tests/runs.py

ROOT = runs.ROOT
EXPERIMENTS = os.path.join(ROOT, 'experiments')
SMOKE = os.path.join(EXPERIMENTS, 'num2words_transformer.py') + ':smoke'
STEPS = 20
# One device; every loss logged; checkpoints at 4, 8, ...: a run to kill after its first.
ARGS = [f'--config={SMOKE}', '--config.mesh.data=1', f'--config.train_steps={STEPS}',
        '--config.log_every_steps=1', '--config.checkpoint_every_steps=4',
        f'--config.eval_every_steps={STEPS}']


@pytest.fixture(scope='module')
def n2w_run(tmp_path_factory):
  """The smoke run, trained in this process through launch.py's main: (workdir, stderr)."""
  workdir = str(tmp_path_factory.mktemp('n2w'))
  code, out, err = runs.cli(*ARGS, f'--workdir={workdir}')
  assert code == 0, (out + err)[-3000:]
  return workdir, err


def test_num2words_smoke_trains_evaluates_with_bleu_and_predicts(n2w_run):
  workdir, err = n2w_run
  assert os.path.exists(os.path.join(workdir, 'spm', 'shared.model'))
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  evals = [r for r in rows if 'eval/bleu' in r]
  assert evals and all(0 <= r['eval/bleu'] <= 100 and r['eval/chrf'] > 0 for r in evals)
  assert 'sacreBLEU signature: BLEU nrefs:1|case:mixed|eff:no|tok:13a' in err
  assert 'packing:' in err and 'sentencepiece bpe: trained' in err
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['best_metric'] == 'bleu' and 'test/bleu' in summary
  # Predict mode reuses the workdir's SentencePiece model: one line out per line in.
  spm_mtime = os.path.getmtime(os.path.join(workdir, 'spm', 'shared.model'))
  code, out, err = runs.cli(f'--config={SMOKE}', f'--workdir={workdir}', '--mode=predict',
                            '--config.mesh.data=1', stdin='twenty-one\n\nseven hundred\n')
  assert code == 0, err[-3000:]
  lines = out.split('\n')
  assert len(lines) == 4 and lines[1] == '' and lines[3] == ''
  assert os.path.getmtime(os.path.join(workdir, 'spm', 'shared.model')) == spm_mtime


def test_packed_batches_sigkill_and_restart_give_the_same_losses(n2w_run, tmp_path):
  """Packed batches (data.packing): a launch.py process killed hard after its first checkpoint
  and restarted repeats the uninterrupted run's losses. (It starts from that run's
  SentencePiece model, as a rerun in a workdir does, so the two see the same tokens.)"""
  ref_dir, _ = n2w_run
  kill_dir = str(tmp_path / 'killed')
  shutil.copytree(os.path.join(ref_dir, 'spm'), os.path.join(kill_dir, 'spm'))
  args = [*ARGS, f'--workdir={kill_dir}']
  out = runs.kill_at_checkpoint(runs.launch(args), kill_dir, 4)  # it really died
  assert 'packing:' in out
  start = runs.resume(args)
  assert 0 < start < STEPS  # ... and really resumed from a checkpoint before the end
  ref, got = runs.losses(ref_dir), runs.losses(kill_dir)
  assert sorted(got) == sorted(ref) == list(range(1, STEPS + 1))
  for step in ref:
    assert got[step] == pytest.approx(ref[step], rel=1e-6, abs=1e-7), step


def test_a_bad_user_corpus_stops_the_run_before_training(tmp_path):
  src, tgt = tmp_path / 'train.en', tmp_path / 'train.de'
  src.write_text('one\ntwo\nthree\n')
  tgt.write_text('eins\nzwei\n')
  files = f'("{src}", "{tgt}")'
  code, _, err = runs.cli(f'--config={SMOKE}', f'--workdir={tmp_path / "run"}',
                          '--config.mesh.data=1', '--config.data.source=files',
                          f'--config.data.train_files={files}',
                          f'--config.data.eval_files={files}',
                          f'--config.data.test_files={files}')
  assert code == 2
  assert f'error: {tgt}:3: file ends while {src} has 1 more line(s)' in err


@pytest.mark.parametrize('name,paper_params', [
    ('wmt14_ende_transformer_base.py', 65e6),   # Vaswani et al. 2017, Table 3
    ('wmt14_ende_transformer_big.py', 213e6),
])
def test_paper_configs_have_the_papers_size_without_data(name, paper_params):
  config = config_lib.load_config(os.path.join(EXPERIMENTS, name))
  assert config.task == 'translation' and config.data.tfds_name == 'wmt14_translate/de-en'
  assert config.optimizer.learning_rate == pytest.approx(
      config.model.emb_dim ** -0.5 * config.optimizer.warmup_steps ** -0.5)
  n = train.count_params(config)  # shapes only: no data, nothing allocated
  assert abs(n - paper_params) / paper_params < 0.05
