"""Inference on a trained workdir: evaluate, predict, and a model loaded once for many calls.

  model = seq2seq_jax.load('runs/g2p')                 # the best checkpoint, config.json's config
  model.predict(['hello', 'world'])                    # -> ['HH AH0 L OW1', 'W ER1 L D']
  model.predict(['a.wav', 'b.wav'])                    # file paths for image and audio tasks
  model.evaluate('test')                               # -> {'loss': ..., 'wer': ..., ...}

`load` restores the parameters and sets the task up once; each batch shape of the predict step
is compiled once (inputs are padded to data.eval_batch_size rows), so later calls only decode.
Which checkpoint: 'best' (the default: the best by the task's validation metric where the run
kept one, else the latest), 'latest', or a step number.
"""
import json
import logging
import os
import sys
import time
from typing import Any, Iterable, Iterator, Sequence

from seq2seq_jax import config as config_lib
from seq2seq_jax import paths
from seq2seq_jax.analysis import attention_maps as maps_lib
from seq2seq_jax.errors import UserError
from seq2seq_jax.pretrained import checkpoints as pretrained
from seq2seq_jax.trainer import metric_writer
from seq2seq_jax.trainer import train as train_lib
from seq2seq_jax.trainer import workdir as workdir_lib
from seq2seq_jax.trainer.checkpoint import Checkpointer

CHOICES = ('best', 'latest')


def parse_checkpoint(value: str | int | None) -> str | int:
  """'best', 'latest' or a step number (the --checkpoint flag); None means 'best'."""
  if value is None or value == '':
    return 'best'
  if isinstance(value, int) and not isinstance(value, bool):
    return value
  text = str(value).strip()
  if text in CHOICES:
    return text
  if text.isdigit():
    return int(text)
  raise UserError(f"--checkpoint must be 'best', 'latest' or a step number, got {value!r}")


def workdir_config(workdir: str, overrides: Sequence[tuple[str, str]] = ()):
  """The config a run was trained with (its config.json), with `overrides` applied."""
  path = os.path.join(paths.check(workdir, '--workdir'), 'config.json')
  try:
    saved = json.loads(paths.read_text(path))
  except FileNotFoundError:
    raise UserError(f'{workdir} has no config.json: give --config (or train first)') from None
  except (OSError, ValueError) as e:
    raise UserError(f'cannot read {path}: {e}') from None
  return config_lib.from_json(saved, overrides)


class Loaded:
  """A trained model restored once: `predict` and `evaluate` reuse its compiled steps."""

  def __init__(self, config, workdir: str, checkpoint: str | int | None = None):
    self.workdir = paths.check(workdir, '--workdir')
    choice = parse_checkpoint(checkpoint)
    self.config = config
    if not paths.isdir(os.path.join(self.workdir, 'checkpoints')):
      spec = pretrained.spec_of(config.model)
      if not spec:
        raise UserError(f'no checkpoints in {self.workdir} (train first with --mode=train)')
      if choice != 'best':
        raise UserError(f'--checkpoint={choice}: {self.workdir} has no checkpoints; the '
                        f'model is model.pretrained={spec} as it is')
      # No training yet: the pretrained weights as they are.
      self.run = train_lib.setup(config)
      self.run.task.setup(self.workdir)
      self.params = pretrained.load_into(self.run.abstract_state.params, spec, self.run.task)
      self.checkpoint = f'pretrained ({spec})'
      self.step = 0
      return
    ckpt = Checkpointer(self.workdir, read_only=True)
    try:
      workdir_lib.check(config, self.workdir, ckpt,
                        fix='leave out --config to use the run\'s own config.json')
      self.run = train_lib.setup(self._with_saved_optimizer(config))
      self.run.task.setup(workdir_lib.task_dir(self.workdir))
      abstract = self.run.abstract_state
      if choice == 'best' and ckpt.best_step() is not None:
        state, _ = ckpt.restore(abstract, best=True)
        self.checkpoint = f'best (step {int(state.step)})'
      elif choice in ('best', 'latest'):
        state, _ = ckpt.restore(abstract)
        self.checkpoint = f'latest (step {int(state.step)})'
      else:
        state = self._restore_step(ckpt, abstract, choice)
        self.checkpoint = f'step {choice}'
    finally:
      ckpt.close()
    self.config = config
    self.params = state.params
    self.step = int(state.step)

  def _with_saved_optimizer(self, config):
    """`config` with the optimizer the run was trained with (its config.json's), so that
    the checkpoint's optimizer state restores whatever optimizer `config` names (decoding
    uses none: a --config without the run's `optimizer.freeze` still loads it)."""
    try:
      saved = workdir_config(self.workdir)
    except UserError:      # no readable config.json: the given config's optimizer
      return config
    if saved.optimizer.to_dict() == config.optimizer.to_dict():
      return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.optimizer = saved.optimizer
    return config

  @staticmethod
  def _restore_step(ckpt: Checkpointer, abstract: Any, step: int) -> Any:
    if step in ckpt.last.all_steps():
      return ckpt.restore(abstract, step=step)[0]
    if step in ckpt.best.all_steps():
      return ckpt.restore(abstract, step=step, best=True)[0]
    kept = sorted(set(ckpt.last.all_steps()) | set(ckpt.best.all_steps()))
    raise UserError(f'--checkpoint={step}: no such checkpoint in {ckpt.workdir} '
                    f'(kept: {", ".join(map(str, kept)) or "none"})')

  def predict(self, inputs: Iterable[str] | str) -> list[str]:
    """One output string per input (an input line: a word, a sentence, a file path)."""
    if isinstance(inputs, str):
      inputs = [inputs]
    return list(self.predict_lines(inputs))

  def predict_lines(self, lines: Iterable[str], interactive: bool = False,
                    attention_maps: str | None = None) -> Iterator[str]:
    """Yields one output line per input line, in input order (empty in, empty out).

    Lines are decoded in batches of data.eval_batch_size; interactive=True answers every line
    as soon as it is read. With attention_maps=DIR (image tasks), each nonempty line's image
    also gets a PNG of the decoder's attention per output token (analysis/attention_maps.py).
    """
    run, params = self.run, self.params
    chunk = 1 if interactive else max(run.task.eval_batch_size, 1)
    draw = maps_lib.writer(run, attention_maps, train_lib.traced) if attention_maps else None
    warned = False
    seen = 0

    def drain(texts: list[str]) -> list[str]:
      nonlocal warned, seen
      nonempty = [i for i, t in enumerate(texts) if t.strip()]
      sources = []
      for i in nonempty:
        source, unknown = run.task.encode_source(texts[i])
        if unknown and not warned:
          logging.warning('input has symbols outside the vocabulary; they are mapped to '
                          'the unknown token (first seen in %r)', texts[i])
          warned = True
        sources.append(source)
      decoded = train_lib.decode_sources(run, params, sources) if sources else []
      if draw is not None and sources:
        draw(params, [(seen + i, texts[i], src, ids)
                      for i, src, ids in zip(nonempty, sources, decoded)])
      seen += len(texts)
      out = [''] * len(texts)
      for i, ids in zip(nonempty, decoded):
        out[i] = run.task.decode_prediction(ids, texts[i])
      return out

    buf: list[str] = []
    for line in lines:
      buf.append(line.rstrip('\n'))
      if len(buf) == chunk:
        yield from drain(buf)
        buf = []
    if buf:
      yield from drain(buf)

  def evaluate(self, split: str = 'test', show_progress: bool = False) -> dict[str, float]:
    """The split's loss, token accuracy and the task's metrics, as training reports them."""
    progress = _Progress(split) if show_progress else None
    metrics = train_lib.evaluate_split(self.run, self.params, split, progress=progress)
    if progress is not None:
      progress.done()
    return metrics


class _Progress:
  """`eval <split>: 96/600 decoded, 12s, ETA 1m3s` on stderr, at most every 2 seconds."""

  def __init__(self, split: str):
    self.split, self.start, self.last = split, time.perf_counter(), 0.0

  def __call__(self, done: int, total: int) -> None:
    now = time.perf_counter() - self.start
    if now - self.last < 2.0 and done < total:
      return
    self.last = now
    eta = now / max(done, 1) * (total - done)
    print(f'eval {self.split}: {done}/{total} decoded, {now:.0f}s, ETA {eta:.0f}s',
          file=sys.stderr, flush=True)

  def done(self) -> None:
    print(f'eval {self.split}: finished in {time.perf_counter() - self.start:.0f}s',
          file=sys.stderr, flush=True)


def load(workdir: str, checkpoint: str | int | None = None, config=None,
         overrides: Sequence[tuple[str, str]] = ()) -> Loaded:
  """A trained model from `workdir`, loaded once (see the module docstring).

  Args:
    workdir: a training run's directory.
    checkpoint: 'best' (default), 'latest' or a step number.
    config: the run's config; default: its config.json with `overrides` applied (e.g.
      [('decode.beam_size', '8')]).
    overrides: (dotted key, value) pairs applied to the workdir's config.json.
  """
  if config is None:
    config = workdir_config(workdir, overrides)
  return Loaded(config, workdir, checkpoint)


def evaluate(config, workdir: str, checkpoint: str | int | None = None) -> list[dict]:
  """Evaluates a checkpoint (default: the best) on validation and test: one JSON line per split
  on stdout, progress on stderr, DIR/eval_<split>_<step>.json and TensorBoard scalars."""
  model = Loaded(config, workdir, checkpoint)
  lead = train_lib._is_lead()  # pylint: disable=protected-access
  if lead and model.step == 0 and not os.path.isdir(model.workdir):
    os.makedirs(model.workdir, exist_ok=True)   # a pretrained model's first figures
  if lead:
    print(f'evaluating {model.checkpoint} of {model.workdir}', file=sys.stderr, flush=True)
  rows = []
  for split in ('validation', 'test'):
    row = {'split': split, 'step': model.step, 'checkpoint': model.checkpoint,
           **model.evaluate(split, show_progress=lead)}
    rows.append(row)
    if lead:
      print(json.dumps(row), flush=True)
      path = os.path.join(model.workdir, f'eval_{split}_{model.step}.json')
      try:
        _keep_earlier(path, row)
        workdir_lib.write_json(path, row)
      except (OSError, UserError) as e:   # a read-only workdir still gets its figures
        print(f'warning: cannot write {path}: {getattr(e, "strerror", None) or e}',
              file=sys.stderr, flush=True)
  if lead:
    _to_tensorboard(model.workdir, model.step, rows)
  return rows


def _keep_earlier(path: str, row: dict) -> None:
  """An earlier evaluation's different figures at `path` (e.g. another decode setting) move
  to the first free `eval_<split>_<step>.<k>.json` (k = 1, 2, ...) before `row` replaces
  them, so no evaluation's figures are lost."""
  if not paths.isfile(path):
    return
  try:
    old = json.loads(paths.read_text(path))
  except (OSError, ValueError):
    old = None
  timing = lambda r: {k: v for k, v in r.items() if k != 'seconds'}
  if isinstance(old, dict) and timing(old) == timing(row):   # the same figures
    return
  stem = path[:-len('.json')]
  k = 1
  while paths.exists(f'{stem}.{k}.json'):
    k += 1
  paths.rename(path, f'{stem}.{k}.json')
  print(f'note: the earlier figures of {os.path.basename(path)} are kept as '
        f'{os.path.basename(stem)}.{k}.json', file=sys.stderr, flush=True)


def _to_tensorboard(workdir: str, step: int, rows: list[dict]) -> None:
  """The figures as scalars `eval_mode/<split>/<metric>` at the checkpoint's step, in an
  event file of their own beside the run's (TensorBoard shows them with the run)."""
  try:
    writer = metric_writer.summary_writer(workdir, filename_suffix='.eval')
    try:
      for row in rows:
        for key, value in row.items():
          if key != 'step' and isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f'eval_mode/{row["split"]}/{key}', value, step)
    finally:
      writer.close()
  except OSError as e:
    print(f'warning: cannot write TensorBoard events into {workdir}: {e.strerror}',
          file=sys.stderr, flush=True)


def predict(config, workdir: str, lines: Iterable[str], interactive: bool = False,
            attention_maps: str | None = None,
            checkpoint: str | int | None = None) -> Iterator[str]:
  """Yields one output line per input line, in input order (Loaded.predict_lines)."""
  return Loaded(config, workdir, checkpoint).predict_lines(lines, interactive, attention_maps)
