r"""Launches an experiment: train, eval, predict, info (and sweeps).

  python launch.py --config=experiments/g2p_cmudict_transformer.py --workdir=runs/g2p
  python launch.py --config=experiments/X.py --config.model.emb_dim=256 --workdir=DIR
  python launch.py --mode=eval --workdir=DIR                    # the run's config.json, best
  echo hello | python launch.py --mode=predict --workdir=DIR --checkpoint=latest
  python launch.py --config=experiments/X.py --mode=info
  python launch.py --mode=compare --runs=DIR1 --runs=DIR2 --workdir=OUT   # table + plot of runs
  python launch.py --mode=export --workdir=DIR --export_dir=OUT  # a CTranslate2 model directory

Multi-process: pass --coordinator_address/--num_processes/--process_id to every process.
Without them, launch.py calls jax.distributed.initialize() (which reads the coordinator,
process count and index from the cluster's environment) only when it sees a multi-host TPU
slice or multislice, SLURM with more than one task, Open MPI's mpirun, or
JAX_COORDINATOR_ADDRESS (see _distributed_init). Nothing else is detected (not Kubernetes,
for one): there, pass the three flags.
"""
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_CONFIG = os.path.join(_HERE, 'experiments', 'g2p_cmudict_transformer.py')

_CONFIG = flags.DEFINE_string('config', _DEFAULT_CONFIG,
                              'Experiment file, optionally with :variant. Override fields '
                              'with --config.a.b=value.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics).')
_MODE = flags.DEFINE_enum('mode', 'train',
                          ['train', 'eval', 'predict', 'info', 'sweep', 'compare', 'export'],
                          'What to do.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for multi-process runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\'s index.')
_ATTENTION_MAPS = flags.DEFINE_string(
    'attention_maps', None, 'With --mode=predict on images: also write, per input image, a PNG '
    'of the decoder\'s attention over the image for each output word into this directory.')
_RESTART = flags.DEFINE_bool(
    'restart_from_scratch', False, 'With --mode=train on a workdir whose checkpoints are all '
    'damaged (set aside as <step>.damaged): start over at step 0 instead of refusing. The kept '
    'checkpoints and metrics.jsonl stay; a workdir with a usable checkpoint resumes as always.')
_SWEEP_PRINT = flags.DEFINE_bool('sweep_print_commands', False,
                                 'With --mode=sweep: print one launch.py command per point.')

_EXPORT_DIR = flags.DEFINE_string(
    'export_dir', None, 'With --mode=export: the new (absent or empty) directory to write the '
    "workdir's checkpoint into, as a CTranslate2 model with its SentencePiece models "
    '(seq2seq_jax/export/ctranslate2.py).')

_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, "With --mode=eval, predict or export: 'best' (the default: the best by "
    "the task's validation metric, where the run kept one), 'latest' or a step number. With "
    "--mode=train: a step to resume from instead of the newest (after a divergence; the "
    'later checkpoints are kept aside as <step>.before_restart).')

_RUNS = flags.DEFINE_multi_string('runs', [], 'With --mode=compare: a finished run directory '
                                  "or a glob of them ('runs/abl/*'); repeat the flag for more. "
                                  'They are tabulated and plotted side by side into --workdir.')
_COMPARE_METRIC = flags.DEFINE_string('compare_metric', '',
                                      'With --mode=compare: the validation metric to plot '
                                      "(e.g. 'wer_nostress'; default: the runs' own).")

_OVERRIDES: list[tuple[str, str]] = []


def _parse_flags(argv: list[str]) -> list[str]:
  """Splits out --config.KEY=VALUE overrides, then lets absl parse the rest."""
  rest = [argv[0]]
  i = 1
  while i < len(argv):
    arg = argv[i]
    if arg.startswith('--config.'):
      body = arg[len('--config.'):]
      if '=' in body:
        key, value = body.split('=', 1)
      elif i + 1 < len(argv):
        key, value = body, argv[i + 1]
        i += 1
      else:
        _fail(f'{arg} needs a value')
      _OVERRIDES.append((key, value))
    else:
      rest.append(arg)
    i += 1
  try:
    return flags.FLAGS(rest)
  except flags.Error as e:
    _fail(str(e))


def _fail(msg: str) -> None:
  print(f'error: {msg}', file=sys.stderr, flush=True)
  sys.exit(2)


def _distributed_init() -> None:
  """Starts jax.distributed when asked to by flags or by a known cluster's environment.

  Known: a multi-host TPU slice (TPU_WORKER_HOSTNAMES lists several hosts), a multislice
  (MEGASCALE_COORDINATOR_ADDRESS), SLURM with more than one task (SLURM_STEP_NUM_TASKS),
  Open MPI (OMPI_COMM_WORLD_SIZE) and an explicit JAX_COORDINATOR_ADDRESS. Anything else runs
  as one process unless the three flags are given.
  """
  import jax  # pylint: disable=g-import-not-at-top
  explicit = [_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value]
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      _fail('--coordinator_address, --num_processes and --process_id go together')
    # Cross-process collectives on the CPU backend need gloo (no effect on GPU/TPU).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
    return
  cluster_env = ('TPU_WORKER_HOSTNAMES', 'MEGASCALE_COORDINATOR_ADDRESS', 'SLURM_STEP_NUM_TASKS',
                 'OMPI_COMM_WORLD_SIZE', 'JAX_COORDINATOR_ADDRESS')
  multi = (os.environ.get('SLURM_STEP_NUM_TASKS', '1') != '1'
           or ',' in os.environ.get('TPU_WORKER_HOSTNAMES', '')
           or any(os.environ.get(v) for v in cluster_env[1:2] + cluster_env[3:]))
  if multi:
    jax.distributed.initialize()


def _workdir_has_config() -> bool:
  from seq2seq_jax import paths  # pylint: disable=g-import-not-at-top
  return paths.exists(os.path.join(_WORKDIR.value, 'config.json'))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f'unexpected arguments: {" ".join(argv[1:])}')
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  try:
    mode = _MODE.value
    if _WORKDIR.value and mode != 'info':
      # gs:// (or a missing filesystem package, or an object store orbax cannot write
      # checkpoints to) is settled here, in one line, before anything is loaded.
      from seq2seq_jax import paths  # pylint: disable=g-import-not-at-top
      paths.check(_WORKDIR.value, '--workdir', workdir=mode != 'compare')
    if (mode in ('eval', 'predict', 'export') and not flags.FLAGS['config'].present
        and _WORKDIR.value and _workdir_has_config()):
      # Inference on a run reads the config it was trained with (overrides still apply).
      from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
      config = inference.workdir_config(_WORKDIR.value, _OVERRIDES)
    else:
      config = config_lib.load_config(_CONFIG.value, _OVERRIDES)
    if _CHECKPOINT.value is not None and mode not in ('train', 'eval', 'predict', 'export'):
      raise UserError('--checkpoint is for --mode=train, eval, predict and export')
    if (_EXPORT_DIR.value is not None) != (mode == 'export'):
      raise UserError('--mode=export and --export_dir go together')
    if mode != 'info' and not _WORKDIR.value:
      raise UserError(f'--mode={mode} needs --workdir')
    if mode == 'compare':
      from seq2seq_jax.analysis import sweep  # pylint: disable=g-import-not-at-top
      rows = sweep.compare(_RUNS.value, _WORKDIR.value, _COMPARE_METRIC.value)
      print(f'[compare] {len(rows)} runs -> ' + ', '.join(
          os.path.join(_WORKDIR.value, f) for f in ('results.csv', 'results.md', 'results.png')))
      return
    if mode == 'sweep':
      from seq2seq_jax.analysis import sweep  # pylint: disable=g-import-not-at-top
      sweep.run(_CONFIG.value, _OVERRIDES, _WORKDIR.value, print_only=_SWEEP_PRINT.value)
      return
    _distributed_init()
    from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
    if mode == 'info':
      print(json.dumps(train.info(config), indent=2, sort_keys=True))
    elif mode == 'train':
      train.train(config, _WORKDIR.value, restart_from_scratch=_RESTART.value,
                  checkpoint=_CHECKPOINT.value)
    elif mode == 'eval':
      train.evaluate(config, _WORKDIR.value, checkpoint=_CHECKPOINT.value)
    elif mode == 'export':
      from seq2seq_jax.export import ctranslate2  # pylint: disable=g-import-not-at-top
      done = ctranslate2.export(config, _WORKDIR.value, _EXPORT_DIR.value, _CHECKPOINT.value)
      print(f'[export] {done["checkpoint"]} of {_WORKDIR.value} -> {_EXPORT_DIR.value} '
            '(CTranslate2: model.bin, config.json, vocabulary; source.model, target.model)')
    elif mode == 'predict':
      for line in train.predict(config, _WORKDIR.value, sys.stdin,
                                interactive=sys.stdin.isatty(),
                                attention_maps=_ATTENTION_MAPS.value,
                                checkpoint=_CHECKPOINT.value):
        sys.stdout.write(line + '\n')
        sys.stdout.flush()
  except UserError as e:
    _fail(str(e))
  except KeyboardInterrupt:
    _fail('interrupted')
  except BrokenPipeError:  # e.g. `... | head`: the reader left; not an error of ours
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
  except OSError as e:   # an OS error outside the trainer's own writes: still one line
    _fail(f'{e.filename or ""}: {e.strerror or e}'.lstrip(': '))


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
