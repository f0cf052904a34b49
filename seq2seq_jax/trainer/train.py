"""The trainer: reads top to bottom, one banner per stage.

  setup      mesh, task, model, optimizer, sharded abstract state, compiled steps
  input      the task's batcher and the feed (seq2seq_jax/trainer/feed.py) that makes global batches
  evaluate   loss over a split and decoding-based task metrics
  (workdir   one training run per workdir (a lock), config.json, refusing another model's
             checkpoints: trainer/workdir.py)
  train      data, restore the newest intact checkpoint, the loop (its periodic actions are
             seq2seq_jax/trainer/loop.py: log, evaluate, checkpoint, preemption), final test summary
  modes      evaluate, predict (lines in, lines out), info

Everything here is plain functions over a `Run` record; the step functions themselves are
pure and live in steps.py.
"""
import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from seq2seq_jax.trainer import encoder_cache
from seq2seq_jax.trainer import feed as feed_lib
from seq2seq_jax.trainer import frontend_weights
from seq2seq_jax.trainer import optim
from seq2seq_jax.pretrained import checkpoints as pretrained
from seq2seq_jax.trainer import run_files
from seq2seq_jax.trainer import sharding
from seq2seq_jax.trainer import steps
from seq2seq_jax import paths
from seq2seq_jax import tasks
from seq2seq_jax.trainer import throughput
# benchmarks/precompile.py calls train.precompile
from seq2seq_jax.trainer.throughput import precompile  # pylint: disable=unused-import
from seq2seq_jax.trainer import warm_start
from seq2seq_jax.trainer import workdir as workdir_lib
from seq2seq_jax.trainer.checkpoint import Checkpointer
from seq2seq_jax.errors import UserError
from seq2seq_jax.trainer.loop import Abandoned, StopSignal, TrainLoop
from seq2seq_jax.trainer.metric_writer import MetricWriter, Progress
from seq2seq_jax.models import build_model
from seq2seq_jax.models.base import Model
from seq2seq_jax.tasks.base import Task
from seq2seq_jax.models import frontends


def config_to_dict(config) -> dict:
  return json.loads(config.to_json_best_effort())


def _is_lead() -> bool:
  return jax.process_index() == 0


def _log(msg: str) -> None:
  if _is_lead():
    print(msg, flush=True)


# =============================================================================
# Setup: mesh, task, model, optimizer, sharded state, compiled steps
# =============================================================================
@dataclasses.dataclass
class Run:
  config: Any
  mesh: jax.sharding.Mesh
  rules: Any
  task: Task                 # tasks/base.py: all the trainer reads of a task
  model: Model               # models/base.py: all it reads of a model
  tx: Any
  schedule: Any
  abstract_state: Any        # ShapeDtypeStructs carrying the target shardings
  state_shardings: Any
  num_params: int
  init_state: Any            # jitted rng -> sharded TrainState
  train_step: Any
  eval_step: Any
  predict_step: Any


def build_model_for(config, task):
  """The model of config.model for the task's vocabularies; its frontend must read the
  task's kind of input."""
  model_config = dict(config.model)
  model_config.pop('frontend_init', None)     # weights for a fresh run (frontend_weights.py)
  if pretrained.spec_of(model_config):        # the architecture is the checkpoint's
    model_config = pretrained.model_config(model_config)
  if 'dtype' in config:
    # config.dtype is the one switch; a model.dtype beside it may only agree with it.
    if model_config.get('dtype', config.dtype) != config.dtype:
      raise UserError(f'config.dtype={config.dtype!r} and model.dtype='
                      f"{model_config['dtype']!r} differ: set only config.dtype")
    model_config['dtype'] = config.dtype
  model = build_model(model_config, task.src_vocab_size, task.tgt_vocab_size)
  frontend = getattr(model, 'frontend', 'tokens')      # the model's default if not set
  reads = frontends.reads(frontend)
  if task.input_kind not in reads:
    raise UserError(f'model.frontend {frontends.name_of(frontend)!r} reads '
                    f'{" or ".join(reads)} inputs, but task {config.task!r} gives '
                    f'{task.input_kind} inputs')
  return model


def count_params(config) -> int:
  """Parameter count from shapes alone (jax.eval_shape): nothing is allocated."""
  task = tasks.get_task(config)
  model = build_model_for(config, task)
  abstract = jax.eval_shape(
      lambda r: model.init({'params': r}, task.dummy_batch(1), train=False)['params'],
      jax.random.key(0))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nn.unbox(abstract)))


def _check_grad_accum(config, mesh) -> None:
  """Every microbatch must be spread over all batch shards (steps.split_microbatches)."""
  k = config.get('grad_accum_steps', 1)
  if not isinstance(k, int) or isinstance(k, bool) or k < 1:
    raise UserError(f'config.grad_accum_steps must be a positive int, got {k!r}')
  shards = feed_lib.batch_divisor(mesh)
  if config.batch_size % (k * shards):
    raise UserError(f'batch_size={config.batch_size} must be a multiple of grad_accum_steps '
                    f'({k}) x the batch shards ({shards}) = {k * shards}')


def setup(config, task: Task | None = None) -> Run:
  """Builds everything a mode needs; compiles lazily (on first call of each step).

  Args:
    config: the resolved experiment config.
    task: a Task to use instead of `config.task`'s (benchmarks pass one with fixed
      vocabulary sizes and synthetic data).
  """
  # --- mesh -------------------------------------------------------------------
  mesh = sharding.make_mesh(config.mesh)
  rules = sharding.axis_rules(config)
  feed_lib.Feed(mesh, int(config.batch_size))  # checks the batch splits over the mesh
  _check_grad_accum(config, mesh)
  # --- task and model -----------------------------------------------------------
  task = task or tasks.get_task(config)
  model = build_model_for(config, task)
  schedule = optim.make_schedule(config.optimizer, config.train_steps)
  tx = optim.make_optimizer(config.optimizer, config.train_steps)

  # --- state: abstract first, then created directly in its sharded layout ------
  def init_boxed(rng):
    params = model.init({'params': rng, 'dropout': rng},
                        task.dummy_batch(feed_lib.batch_divisor(mesh)), train=False)['params']
    return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                            opt_state=tx.init(params))

  with sharding.activate(mesh, rules):
    boxed = jax.eval_shape(init_boxed, jax.random.key(0))
  state_shardings = sharding.logical_to_shardings(boxed, mesh, rules)
  unboxed = nn.unbox(boxed)
  abstract_state = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), unboxed, state_shardings)
  num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(unboxed.params))

  def init_state(rng):
    return nn.unbox(init_boxed(rng))

  data_sh = feed_lib.batch_sharding(mesh)
  repl = sharding.replicated(mesh)
  # Batches are dicts of [batch, ...] arrays: one sharding prefix covers every key.
  train_step = jax.jit(steps.make_train_step(model, tx, schedule, config),
                       in_shardings=(state_shardings, data_sh),
                       out_shardings=(state_shardings, repl), donate_argnums=(0,))
  eval_step = jax.jit(steps.make_eval_step(model),
                      in_shardings=(state_shardings.params, data_sh), out_shardings=repl)
  predict_step = jax.jit(steps.make_predict_step(model, config.decode, task.decode_rules()),
                         in_shardings=(state_shardings.params, data_sh, repl),
                         out_shardings=data_sh)
  return Run(config=config, mesh=mesh, rules=rules, task=task, model=model, tx=tx,
             schedule=schedule, abstract_state=abstract_state, state_shardings=state_shardings,
             num_params=num_params,
             init_state=jax.jit(init_state, out_shardings=state_shardings),
             train_step=train_step, eval_step=eval_step, predict_step=predict_step)


def traced(run: Run, fn, *args):
  """Calls a jitted step inside the mesh + logical-rules context its tracing needs."""
  with sharding.activate(run.mesh, run.rules):
    return fn(*args)


# =============================================================================
# Evaluation: loss over every pair, and decoding-based task metrics
# =============================================================================
def make_input(run: Run, examples, *, batch_size: int,
               shuffle: bool) -> tuple[Any, feed_lib.Feed]:
  """The task's batcher over `examples` for this process's rows, and the feed that assembles
  its batches into global arrays."""
  feed = feed_lib.Feed(run.mesh, batch_size)
  batcher = run.task.make_batcher(*examples, batch_size=batch_size, seed=run.config.seed,
                                  shuffle=shuffle, **feed.batcher_args)
  return batcher, feed


def decode_sources(run: Run, params, sources: list[Any], stop=None,
                   progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
  """Decodes sources (any input kind) in batches; returns id arrays in input order. A `stop`
  that turns true between batches raises loop.Abandoned; `progress(done, total)` is called
  after each batch."""
  bs = run.task.eval_batch_size
  feed = feed_lib.Feed(run.mesh, bs, 'data.eval_batch_size')
  # Sorting by length keeps padding (and the number of distinct shapes) small.
  order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
  out: list[np.ndarray | None] = [None] * len(sources)
  # decode.method='sample' draws from the seed and the batch number: the same sources in
  # the same order give the same samples.
  root = jax.random.fold_in(jax.random.key(run.config.seed), 0x5A3)
  for n, start in enumerate(range(0, len(order), bs)):
    if stop is not None and stop():
      raise Abandoned()
    idx = order[start:start + bs]
    full = run.task.collate_sources([sources[i] for i in idx], bs)
    inputs = feed.to_global({k: feed.local_rows(v) for k, v in full.items()})
    result = traced(run, run.predict_step, params, inputs, jax.random.fold_in(root, n))
    # One process holds every shard itself; several gather theirs (a compiled all-gather).
    result = np.asarray(result if result.is_fully_addressable
                        else multihost_utils.process_allgather(result, tiled=True))
    for j, i in enumerate(idx):
      out[i] = result[j]
    if progress is not None:
      progress(min(start + bs, len(order)), len(order))
  return out


SAMPLES = 4   # decoded examples per validation evaluation, for TensorBoard's Text dashboard


def evaluate_split(run: Run, params, split: str, stop=None,
                   progress: Callable[[int, int], None] | None = None,
                   samples: list | None = None) -> dict[str, float]:
  """Loss and token accuracy over every pair of `split`, plus the task's decoding metrics
  (abandoned between batches when `stop` turns true, and `progress(done, total)` after each
  decoded batch: decode_sources). A `samples` list gets (input, output, references) of a
  few examples spread over the split."""
  t0 = time.perf_counter()
  batcher, feed = make_input(run, run.task.eval_loss_data(split),
                             batch_size=run.task.eval_batch_size, shuffle=False)
  nll = tokens = hits = 0.0
  for local in batcher.epoch_batches():
    if stop is not None and stop():
      raise Abandoned()
    m = traced(run, run.eval_step, params, feed.to_global(local))
    m = jax.device_get(m)
    nll += float(m['nll_sum'])
    tokens += float(m['tokens'])
    hits += float(m['hits'])
  metrics = {'loss': nll / max(tokens, 1.0), 'token_accuracy': 100.0 * hits / max(tokens, 1.0)}
  eval_set = run.task.eval_set(split)
  decoded = decode_sources(run, params, eval_set.sources, stop, progress)
  hyps = [run.task.decode_prediction(ids, text) for ids, text in zip(decoded, eval_set.texts)]
  metrics.update(run.task.score(hyps, eval_set.references))
  if samples is not None and hyps:
    picks = sorted({round(i * (len(hyps) - 1) / max(SAMPLES - 1, 1)) for i in range(SAMPLES)})
    samples.extend((eval_set.texts[i], hyps[i], eval_set.references[i]) for i in picks)
  metrics['examples'] = len(hyps)
  metrics['seconds'] = time.perf_counter() - t0
  return metrics

# Workdir bookkeeping (lock, config.json, a mismatched checkpoint): trainer/workdir.py.


# =============================================================================
# Train
# =============================================================================
def way_back_steps(config) -> int:
  """config.way_back_steps, by default just beyond the regular checkpoints kept."""
  steps = config.get('way_back_steps')
  if steps is None:
    return int(config.checkpoint_every_steps) * int(config.get('keep_checkpoints', 3))
  return int(steps)


def train(config, workdir: str, restart_from_scratch: bool = False,
          checkpoint: str | None = None) -> dict[str, Any]:
  """Trains (resuming from the newest intact checkpoint in workdir), then reports test
  metrics. On SIGTERM / SIGINT it stops after the current step with a checkpoint of it and
  returns {'stopped_at': step, ...} instead. A workdir whose checkpoints are all unusable is
  refused unless restart_from_scratch (workdir.py: restore). checkpoint='STEP' resumes from
  that earlier checkpoint (after a divergence): the later ones are set aside, kept."""
  workdir = workdir_lib.make(workdir)
  lock = workdir_lib.lock(workdir)
  ckpt = Checkpointer(workdir, keep=int(config.get('keep_checkpoints', 3)),
                      way_back_steps=way_back_steps(config))
  try:
    workdir_lib.check(config, workdir, ckpt)
    if checkpoint not in (None, 'latest'):
      if not str(checkpoint).isdigit():
        raise UserError(f"--checkpoint={checkpoint}: training resumes from 'latest' (the "
                        'default) or a step number')
      moved = ckpt.rewind(int(checkpoint))
      if moved and _is_lead():
        _log(f'--checkpoint={checkpoint}: resuming from step {checkpoint}; the later '
             'checkpoints are kept aside as '
             + ', '.join(f'{m}.before_restart' for m in moved))
    workdir_lib.refuse_silent_restart(ckpt, restart_from_scratch)
    last = ckpt.latest_step()
    summary = workdir_lib.finished_summary(workdir, last, config.train_steps) if last else None
    if summary is not None:   # a finished run's rerun: report it again, add nothing
      return summary
    if lock is not None:  # only now: a refused run leaves the workdir as it was
      lock.seek(0)
      lock.truncate()
      lock.write(f'{os.getpid()}\n')
      lock.flush()
    # The files the run writes (metrics.jsonl, TensorBoard events) are closed when it ends,
    # also on an error: on gs:// an event file is uploaded at its close.
    with StopSignal() as stop, contextlib.ExitStack() as opened:
      return _train(config, workdir, ckpt, stop, restart_from_scratch, opened)
  finally:
    # Let async saves finish (or fail) cleanly, also when the run stops on an error.
    ckpt.wait()
    ckpt.close()
    if lock is not None:
      lock.close()


def _train(config, workdir: str, ckpt: Checkpointer, stop: StopSignal, restart: bool,
           opened: contextlib.ExitStack) -> dict[str, Any]:
  run = setup(config)
  # A fresh run may start from another run's parameters (seq2seq_jax/trainer/warm_start.py), with the
  # vocabulary they were trained with.
  init_from = (paths.check(config.init_from, 'config.init_from')
               if config.get('init_from', '') else '')
  init_source = ''
  if init_from and ckpt.latest_step() is None:
    if init_from == paths.resolve(workdir):
      raise UserError('config.init_from is this run\'s own --workdir (a workdir with '
                      'checkpoints resumes by itself)')
    init_source = warm_start.source_checkpoint(init_from)
    copied = warm_start.copy_vocabulary(init_from, workdir)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('warm start vocabulary')
    if copied:
      _log(f'vocabulary from {init_from}: {", ".join(copied)}')
  with run_files.io_errors('writing the vocabulary', workdir):
    run.task.setup(workdir_lib.task_dir(workdir))
    if _is_lead():
      workdir_lib.keep_vocabulary(workdir)
  if _is_lead():
    workdir_lib.write_json(os.path.join(workdir, 'config.json'), config_to_dict(config))
  _log(f'mesh {dict(run.mesh.shape)} over {jax.device_count()} devices, '
       f'{jax.process_count()} process(es); model {config.model.name}: '
       f'{run.num_params:,} parameters')

  # --- state: restore the newest intact checkpoint, or initialise ---------------------------
  meta: dict[str, Any] = {}
  restored = workdir_lib.restore(ckpt, run.abstract_state, restart)
  if restored is not None:
    state, meta = restored
    start = int(state.step)
    for s in meta.get('healthy_steps', ()):   # the way back (checkpoint.py)
      ckpt.note_health(int(s), True)
    _log(f'resumed from step {start} in {workdir}')
    if ckpt.check_best():   # a damaged best copy: the next evaluation saves a new one
      meta['best'] = None
  else:
    state, start = run.init_state(jax.random.key(config.seed)), 0
    if init_source:
      params, report = warm_start.load_into(state.params, init_from, init_source)
      state = state.replace(params=params)
      _log(f'warm start from {init_source}: '
           f'{len(report["loaded"])} parameter arrays loaded; initialised here: '
           f'{", ".join(report["new"]) or "none"}; left out: '
           f'{", ".join(report["left_out"]) or "none"}')
    spec = pretrained.spec_of(config.model)
    if spec and not init_source:   # (a warm start brings its own weights)
      state = state.replace(params=pretrained.load_into(state.params, spec, run.task))
      _log(f'weights from model.pretrained={spec} '
           f'({pretrained.resolve(spec)})')
    init_path = config.model.get('frontend_init', '')
    if init_path:
      state = state.replace(params=frontend_weights.load_into(state.params, init_path))
      _log(f'frontend initialised from {init_path}')
  # --- data (after the checkpoints: a refused or finished run reads none) ------------------
  batcher, feed = None, None
  if start < config.train_steps:
    batcher, feed = make_input(run, run.task.train_data(), batch_size=int(config.batch_size),
                               shuffle=True)
    if batcher.num_dropped:
      _log(f'{batcher.num_dropped} training examples fit no batch shape and were dropped')
  meter = throughput.Meter(config.get('dtype', 'float32'))
  _log(f'MFU against a peak of {meter.peak:.3g} FLOP/s ({meter.peak_source})')
  loop = TrainLoop(run=run, ckpt=ckpt, workdir=workdir, best=meta.get('best'),
                   writer=opened.enter_context(
                       MetricWriter(workdir, enabled=_is_lead(), resumed_at=start)),
                   progress=Progress(config.train_steps, start, enabled=_is_lead()),
                   seconds={k: meta.get(f'{k}_seconds', 0.0) for k in ('train', 'eval',
                                                                        'checkpoint')},
                   evaluate=lambda params, split, samples=None: evaluate_split(
                       run, params, split, stop.agreed, samples=samples),
                   stop=stop, meter=meter, loss_spike=float(config.get('loss_spike', 2.0)),
                   low_loss=meta.get('low_loss'))
  if start < config.train_steps:   # TensorBoard's HParams dashboard: settings beside results
    best = run.task.best_metric
    loop.writer.hparams(config_to_dict(config),
                        ['train/loss', 'eval/loss', f'eval/{best}', f'test/{best}'])

  if config.get('cache_encoder_outputs', False) and start < config.train_steps:
    # inside the loop's clock: train_seconds has the encoder's pass over the training set
    batcher = encoder_cache.build(
        run, state.params, batcher, feed, _log,
        None if paths.is_remote(workdir) else os.path.join(workdir, 'encoder_cache'))
  threads = int(config.get('precompile_threads', 0))
  if threads and start < config.train_steps:  # inside the loop's clock: train_seconds has it
    t = time.perf_counter()
    n = throughput.precompile(run, [feed.to_global(b) for b in batcher.shape_examples()],
                              threads, meter)
    _log(f'train step compiled for {n} batch shape(s) in {time.perf_counter() - t:.0f} s, '
         f'{threads} at a time')

  # --- loop ---------------------------------------------------------------------------------
  if start < config.train_steps:
    _log(f'step {start + 1}: ' + ('compiling the train step for its batch shape; other shapes '
                                  'compile when a step first meets them' if not threads else
                                  'the first step (compiled above)'))
  first = time.perf_counter()
  for step in range(start, config.train_steps):
    local = batcher.get_batch(step)
    batch = feed.to_global(local)
    flops = traced(run, meter.step_flops, run.train_step, state, batch) if meter else 0.0
    state, metrics = traced(run, run.train_step, state, batch)
    done = step + 1
    loop.record_step(done, metrics, feed.global_tokens(local), flops)
    if step == start:   # steps/s and ETA leave out the first step's compile (and the restore)
      jax.block_until_ready(metrics)
      loop.restart_rates(done)
      _log(f'step {done} took {time.perf_counter() - first:.1f} s (compiling included); '
           'rates and ETA count from here')
    last = done == config.train_steps
    stopping = not last and loop.should_stop()
    if done % config.log_every_steps == 0 or last or stopping:
      loop.log(done)
    if done % config.eval_every_steps == 0 or last:
      loop.evaluate(done, state)
      stopping = stopping or loop.should_stop()   # (a signal during it abandons it)
    if done % config.checkpoint_every_steps == 0 or last or stopping:
      loop.checkpoint(done, state)
    if stopping:
      with loop.timed('checkpoint'):
        ckpt.wait()
      _log(f'stopped by {stop.received or "a signal to another process"} after step {done} '
           f'of {config.train_steps}: checkpoint {done} is saved in {workdir}/checkpoints; '
           'rerun the same command to resume')
      return {'workdir': workdir, 'stopped_at': done, **_seconds(loop.totals())}
  with loop.timed('checkpoint'):
    ckpt.wait()
  totals = loop.totals()

  # --- final report: test metrics of the best checkpoint --------------------------------------
  params, source = state.params, 'final'
  if ckpt.best_step() is not None:
    try:
      params = ckpt.restore(run.abstract_state, best=True)[0].params
      source = (f'best (step {ckpt.best_step()}, validation {run.task.best_metric} '
                f'{loop.best:.4g})')
    except UserError as e:  # a damaged best checkpoint: say so, score the final state
      if _is_lead():
        run_files.warn(f'{e}; scoring the final parameters')
  t = time.perf_counter()
  test = evaluate_split(run, params, 'test')
  totals['eval'] += time.perf_counter() - t
  final = max(start, int(config.train_steps))   # a run resumed past train_steps stays there
  loop.writer.write(final, {f'test/{k}': v for k, v in test.items()})
  summary = {'workdir': workdir, 'steps': final, 'num_params': run.num_params,
             'best_metric': run.task.best_metric, **_seconds(totals), 'checkpoint': source,
             **{f'test/{k}': v for k, v in test.items()}}
  if _is_lead():
    workdir_lib.write_json(os.path.join(workdir, 'summary.json'), summary)
    print('SUMMARY ' + json.dumps(summary), flush=True)
  return summary


def _seconds(totals: dict[str, float]) -> dict[str, float]:
  """summary.json's time fields: train_seconds is the training loop only (steps, input,
  logging); eval_seconds validation and test evaluation; checkpoint_seconds what saving
  blocked."""
  return {f'{k}_seconds': round(v, 1) for k, v in totals.items()}


# =============================================================================
# Evaluate / predict / info
# =============================================================================
def evaluate(config, workdir: str, checkpoint: str | int | None = None) -> list[dict]:
  """Evaluates a checkpoint on validation and test (trainer/inference.py)."""
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  return inference.evaluate(config, workdir, checkpoint)


def predict(config, workdir: str, lines: Iterable[str], interactive: bool = False,
            attention_maps: str | None = None,
            checkpoint: str | int | None = None) -> Iterator[str]:
  """One output line per input line (trainer/inference.py)."""
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  return inference.predict(config, workdir, lines, interactive=interactive,
                           attention_maps=attention_maps, checkpoint=checkpoint)


def info(config) -> dict:
  """The resolved config and the abstract parameter count."""
  return {'config': config_to_dict(config), 'num_params': count_params(config)}
