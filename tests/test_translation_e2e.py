"""Machine translation end to end through launch.py (the offline num2words experiment), and
the paper configurations' sizes without their data."""
import json
import os
import subprocess
import sys

import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, 'experiments')
SMOKE = os.path.join(EXPERIMENTS, 'num2words_transformer.py') + ':smoke'


def launch(*args, stdin=None):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch.py'), *args], input=stdin,
                        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_num2words_smoke_trains_evaluates_with_bleu_and_predicts(tmp_path):
  workdir = str(tmp_path / 'n2w')
  proc = launch(f'--config={SMOKE}', f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.exists(os.path.join(workdir, 'spm', 'shared.model'))
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  evals = [r for r in rows if 'eval/bleu' in r]
  assert evals and all(0 <= r['eval/bleu'] <= 100 and r['eval/chrf'] > 0 for r in evals)
  assert 'sacreBLEU signature: BLEU nrefs:1|case:mixed|eff:no|tok:13a' in proc.stderr
  assert 'packing:' in proc.stderr and 'sentencepiece bpe: trained' in proc.stderr
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['best_metric'] == 'bleu' and 'test/bleu' in summary
  # Predict mode reuses the workdir's SentencePiece model: one line out per line in.
  spm_mtime = os.path.getmtime(os.path.join(workdir, 'spm', 'shared.model'))
  pred = launch(f'--config={SMOKE}', f'--workdir={workdir}', '--mode=predict',
                stdin='twenty-one\n\nseven hundred\n')
  assert pred.returncode == 0, pred.stderr[-3000:]
  lines = pred.stdout.split('\n')
  assert len(lines) == 4 and lines[1] == '' and lines[3] == ''
  assert os.path.getmtime(os.path.join(workdir, 'spm', 'shared.model')) == spm_mtime


def test_a_bad_user_corpus_stops_the_run_before_training(tmp_path):
  src, tgt = tmp_path / 'train.en', tmp_path / 'train.de'
  src.write_text('one\ntwo\nthree\n')
  tgt.write_text('eins\nzwei\n')
  files = f'("{src}", "{tgt}")'
  proc = launch(f'--config={SMOKE}', f'--workdir={tmp_path / "run"}',
                '--config.data.source=files', f'--config.data.train_files={files}',
                f'--config.data.eval_files={files}', f'--config.data.test_files={files}')
  assert proc.returncode != 0
  assert f'error: {tgt}:3: file ends while {src} has 1 more line(s)' in proc.stderr
  assert 'Traceback' not in proc.stderr


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
