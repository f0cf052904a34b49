"""Settings experiments share (imported by the experiment files).

An experiment file starts from `base_config()` (the run settings every experiment has, with
their usual values) and says only what its paper or task sets: the data, the model, the
optimizer, the schedule of evaluations. Its `:smoke` variant goes through `smoke()`.
"""
from typing import Any, Sequence

import ml_collections


def base_config(task: str, *, batch_size: int, train_steps: int, eval_every_steps: int,
                checkpoint_every_steps: int = 0, log_every_steps: int = 50,
                keep_checkpoints: int = 2, label_smoothing: float = 0.1,
                **settings: Any) -> ml_collections.ConfigDict:
  """The settings every experiment has, for `task`; keyword arguments set the rest.

  Args:
    task: a module of seq2seq_jax/tasks/.
    batch_size: the global batch (across all devices and hosts).
    train_steps: optimizer updates.
    eval_every_steps: validation evaluations (and the best checkpoint) every this many steps.
    checkpoint_every_steps: checkpoints every this many steps (0: with each evaluation).
    log_every_steps: progress lines and metrics.jsonl rows.
    keep_checkpoints: how many step checkpoints are kept (the best one is kept apart).
    label_smoothing: of the cross-entropy targets (Szegedy et al. 2016).
    **settings: further top-level settings (data=..., model=..., optimizer=..., decode=...).

  Returns:
    A ConfigDict with seed 0, float32 compute, no gradient accumulation, data parallelism
    (mesh_and_rules) and the given settings.
  """
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = task
  c.batch_size = batch_size
  c.grad_accum_steps = 1      # microbatches per batch (batch_size / k rows each); one update
  c.dtype = 'float32'         # compute dtype ('bfloat16': params and optimizer stay float32)
  c.train_steps = train_steps
  c.log_every_steps = log_every_steps
  c.eval_every_steps = eval_every_steps
  c.checkpoint_every_steps = checkpoint_every_steps or eval_every_steps
  c.keep_checkpoints = keep_checkpoints
  c.label_smoothing = label_smoothing
  mesh_and_rules(c)
  for key, value in settings.items():
    c[key] = value
  return c


def smoke(c: ml_collections.ConfigDict, *, batch_size: int, train_steps: int = 10,
          eval_every_steps: int = 10, model: dict[str, Any] | None = None,
          **settings: Any) -> None:
  """Makes `c` a `:smoke` variant: a few steps of a tiny model that check the whole path
  (data, training, evaluation, checkpoints) in seconds to a minute, and learn little.

  Args:
    c: the experiment's config, changed in place.
    batch_size: the smoke run's global batch.
    train_steps: its steps; it logs every 5 and evaluates and checkpoints every
      eval_every_steps.
    eval_every_steps: see above.
    model: model settings to shrink (emb_dim=16, ...).
    **settings: other top-level settings to replace.
  """
  c.batch_size = batch_size
  c.train_steps = train_steps
  c.log_every_steps = 5
  c.eval_every_steps = eval_every_steps
  c.checkpoint_every_steps = eval_every_steps
  c.optimizer.warmup_steps = 5
  if model:
    c.model.update(model)
  for key, value in settings.items():
    c[key] = value


def check_variant(arg: str, variants: Sequence[str]) -> None:
  """A clear error for a variant (`path:variant`) that the experiment does not have."""
  if arg not in variants:
    raise ValueError(f'unknown config variant {arg!r} '
                     f'(known: {", ".join(v for v in variants if v)})')


def translation_data(**overrides) -> dict:
  """config.data for task='translation'; experiments override what differs."""
  data = dict(
      source='tfds',                      # 'tfds' | 'files' | 'tsv' | 'num2words'
      tfds_name='wmt14_translate/de-en',
      src_lang='en', tgt_lang='de',       # either direction of the TFDS pair
      train_split='train', eval_split='validation', test_split='test',
      train_files=('', ''), eval_files=('', ''), test_files=('', ''),  # source='files'
      train_tsv='', eval_tsv='', test_tsv='',                          # source='tsv'
      num2words_max=0,                    # source='num2words': numbers 0..max-1
      bad_pairs='error',                  # 'error' (file:line) | 'skip' (counted)
      data_dir='',                        # TFDS data dir ('' -> $TFDS_DATA_DIR or ~/tensorflow_datasets)
      vocab_type='sentencepiece',
      spm_model_type='bpe',               # 'bpe' | 'unigram' | 'word'
      shared_vocab=True,
      vocab_size=37000,                   # when shared_vocab
      src_vocab_size=0, tgt_vocab_size=0, # when not shared_vocab
      spm_train_sentences=1_000_000,
      max_len=128,                        # tokens per side incl. EOS; longer pairs dropped
      packing=True,
      buckets=(32, 64, 128),              # when packing=False
      token_cache=True,                   # tokenize train once into WORKDIR/cache/ (array_record)
      source_prefix='',                   # model.pretrained: text before every source (T5's)
      eval_batch_size=64,
      eval_max_examples=0,
  )
  data.update(overrides)
  return data


def coco_captions_data(**overrides) -> dict:
  """config.data for task='captioning' on MS COCO 2014 (the COCO experiments share it).

  TFDS coco_captions in the Karpathy splits (prepared with `tfds build coco_captions
  --file_format=array_record`), images decoded per batch; for COCO's own JSON files instead:
  --config.data.tfds_name= --config.data.train_captions=... (experiments/coco_*.py).
  The 10,000 most frequent words (Xu et al. 2015, Sec. 5.1).
  """
  data = dict(tfds_name='coco_captions', train_split='train+restval', eval_split='val',
              test_split='test', data_dir='', cache_images=False,
              train_captions='', eval_captions='', test_captions='', image_root='',
              image_size=(224, 224), channels=3, vocab_size=10_000, min_count=5,
              target_len=40, bad_pairs='error', eval_batch_size=64, eval_max_examples=0)
  data.update(overrides)
  return data


def mesh_and_rules(c: ml_collections.ConfigDict) -> None:
  """Data parallelism by default; the rules say where each logical axis may be split."""
  c.mesh = dict(data=-1, fsdp=1, tensor=1)
  c.logical_axis_rules = (
      ('batch', ('data', 'fsdp')),
      ('vocab', 'tensor'),
      ('mlp', 'tensor'),
      ('heads', 'tensor'),
      ('hidden', 'tensor'),
      ('gates', None),
      ('kv', None),
      ('length', None),
      ('embed', 'fsdp'),
  )


def decode(beam_size: int = 4, alpha: float = 0.6, max_len: int = 64, **overrides) -> dict:
  """config.decode: how evaluation and --mode=predict decode.

  method 'beam' (beam_size, alpha: GNMT length penalty; ctc_weight > 0: the beam rescored
  with the model's CTC head, joint CTC-attention decoding), 'greedy', 'sample' (temperature,
  top_k: 0 = all, top_p: 1 = all) or 'ctc_greedy'; the sampling keys must stay neutral for
  other methods.
  """
  return dict(method='beam', beam_size=beam_size, alpha=alpha, max_len=max_len,
              temperature=1.0, top_k=0, top_p=1.0, ctc_weight=0.0, **overrides)


def pretrained_model(dropout_rate: float = 0.1, attention_dropout_rate: float = 0.0) -> dict:
  """config.model of a pretrained Transformer (Marian, BART, T5: seq2seq_jax/pretrained/): the
  checkpoint (--config.model.pretrained=DIR) sets the architecture and the tokenizer; a config
  sets only what training changes (dropout_rate, attention_dropout_rate, remat, dtype)."""
  return dict(name='transformer', pretrained='', dropout_rate=dropout_rate,
              attention_dropout_rate=attention_dropout_rate)


def summarization_data(**overrides) -> dict:
  """config.data for task='summarization' (seq2seq_jax/tasks/summarization.py)."""
  data = dict(
      source='tfds',                      # 'tfds' | 'files' | 'tsv' | 'pydoc'
      tfds_name='cnn_dailymail',          # or 'gigaword'
      src_feature='', tgt_feature='',     # '': the dataset's (article/highlights, document/summary)
      train_split='train', eval_split='validation', test_split='test',
      train_files=('', ''), eval_files=('', ''), test_files=('', ''),  # source='files'
      train_tsv='', eval_tsv='', test_tsv='',                          # source='tsv'
      pydoc={},                           # source='pydoc': PydocSpec fields (defaults: {})
      bad_pairs='error',                  # 'error' (file:line) | 'skip' (counted)
      data_dir='',                        # TFDS data dir ('' -> $TFDS_DATA_DIR or ~/tensorflow_datasets)
      vocab_type='word',                  # 'word' | 'sentencepiece' (spm_model_type)
      spm_model_type='bpe', spm_train_sentences=1_000_000,
      vocab_size=50_000,                  # shared by source and target, specials included
      lowercase=True,
      max_source_len=400, max_target_len=100,  # tokens kept (See et al. 2017: 400 / 100)
      buckets=(100, 200, 300, 401),       # padded source lengths (incl. EOS)
      source_prefix='',                   # model.pretrained: text before every source (T5's)
      eval_batch_size=64,
      eval_max_examples=0,
  )
  data.update(overrides)
  return data


def speech_data(**overrides) -> dict:
  """config.data for task='speech' (seq2seq_jax/tasks/speech.py): LibriSpeech by default.

  TFDS librispeech (prepared with `tfds build librispeech --file_format=array_record`), read
  per batch (cache_audio=False: 960 h are 110 GB of samples); for a user's TSV of
  `audio_path<TAB>transcript` lines instead: --config.data.tfds_name= --config.data.train_tsv=...
  """
  data = dict(
      tfds_name='librispeech', data_dir='',
      train_split='train_clean100+train_clean360+train_other500', eval_split='dev_clean',
      test_split='test_clean', tfds_audio_key='speech', tfds_text_key='text',
      train_tsv='', eval_tsv='', test_tsv='',
      cache_audio=False,
      targets='chars',                    # 'chars' | 'sentencepiece'
      alphabet="abcdefghijklmnopqrstuvwxyz' ",
      spm_vocab_size=0, spm_model_type='unigram',
      lowercase=True,
      second_buckets=(4, 8, 12, 16, 20, 36),   # LibriSpeech utterances are <= 35 s
      target_len=600,                     # characters + EOS; longer training targets dropped
      bad_pairs='error',
      eval_batch_size=32,
      eval_max_examples=0,
  )
  data.update(overrides)
  return data


# The split keys of a user's files, per form (data/sources.py: 'tsv', 'files', 'captions').
OWN_DATA_KEYS = {
    'tsv': {'train_tsv': '', 'eval_tsv': '', 'test_tsv': ''},
    'files': {'train_files': ('', ''), 'eval_files': ('', ''), 'test_files': ('', '')},
    'captions': {'train_captions': '', 'eval_captions': '', 'test_captions': ''},
}


def own_data(c: ml_collections.ConfigDict, form: str, *, remove: Sequence[str] = (),
             source: str = '') -> None:
  """Makes `c` an own-data variant (`:tsv`, `:files`): the experiment's model and settings read
  the user's files instead of its dataset (docs/own_data.md).

  Args:
    c: the experiment's config, changed in place.
    form: 'tsv' (data.train_tsv, ...), 'files' (data.train_files=(source, target), ...) or
      'captions' (data.train_captions, ...); the split keys are set to '' so that a run
      without them stops with one line naming the flag to give.
    remove: data keys that chose the dataset (a builder's settings group such as
      'digit_strips', or 'tfds_name'), removed.
    source: data.source's new value, for tasks that name their source there ('tsv', 'files').
  """
  for key in remove:
    if key in c.data:
      del c.data[key]
  for key, value in OWN_DATA_KEYS[form].items():
    c.data[key] = value
  if source:
    c.data.source = source
