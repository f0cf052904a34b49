r"""Real-time factor of a trained speech model's decoding: audio seconds per second of decoding.

Loads a speech run's best checkpoint (the latest if there is none), decodes every utterance
of a split with each decoding method asked for, and reports, per method, audio seconds
decoded per wall second (the median of --repeats timed passes after one warm-up pass that
compiles) and the WER and CER of those transcripts. Decoding includes the audio frontend (log
mel from the waveform), the encoder and the search, batched as evaluation batches them
(data.eval_batch_size); not included: reading the files (done once before timing) and
scoring. Also prints the host's measured float32 matmul rate, for comparison across hosts.
A method `beam@W` is beam search rescored with the CTC head at decode.ctc_weight=W (joint
CTC-attention decoding; choose W on --split=validation, then report the test split).

  python benchmarks/speech_rtf.py --config=experiments/spoken_digits.py --workdir=runs/digits_las
  python benchmarks/speech_rtf.py --config=experiments/spoken_digits.py:transformer \
      --workdir=runs/digits_tf --methods=beam,greedy,ctc_greedy,beam@0.3
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--config', required=True)
  p.add_argument('--workdir', required=True)
  p.add_argument('--split', default='test')
  p.add_argument('--methods', default='beam',
                 help='comma-separated decode.method values; beam@W: beam, decode.ctc_weight=W')
  p.add_argument('--repeats', type=int, default=3)
  args = p.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import throughput  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top

  try:
    print(json.dumps({'matmul_flops_per_s': throughput.measured_matmul_flops_per_s(),
                      'devices': jax.device_count()}), flush=True)
    for spec in args.methods.split(','):
      method, _, weight = spec.partition('@')
      overrides = [('decode.method', method)]
      if weight:
        overrides.append(('decode.ctc_weight', weight))
      config = config_lib.load_config(args.config, overrides)
      run, state = train._restore_for_inference(config, args.workdir)  # pylint: disable=protected-access
      ckpt = Checkpointer(args.workdir, read_only=True)
      params = state.params
      if ckpt.best_step() is not None:
        params = ckpt.restore(run.abstract_state, best=True)[0].params
      ckpt.close()
      if run.task.input_kind != 'audio':
        raise UserError(f'{args.config} is not a speech task')
      eval_set = run.task.eval_set(args.split)
      audio = sum(len(s) for s in eval_set.sources) / 16_000
      train.decode_sources(run, params, eval_set.sources)          # warm-up: compiles
      times, decoded = [], None
      for _ in range(args.repeats):
        t = time.perf_counter()
        decoded = train.decode_sources(run, params, eval_set.sources)
        times.append(time.perf_counter() - t)
      hyps = [run.task.decode_prediction(ids, text) for ids, text in zip(decoded, eval_set.texts)]
      scores = run.task.score(hyps, eval_set.references)
      seconds = statistics.median(times)
      beam = int(config.decode.get('beam_size', 1)) if method == 'beam' else 1
      print(json.dumps({'method': method, 'beam_size': beam,
                        'ctc_weight': float(config.decode.get('ctc_weight', 0.0)),
                        'split': args.split, 'utterances': len(hyps),
                        'audio_seconds': round(audio, 1), 'decode_seconds': round(seconds, 2),
                        'rtf_audio_s_per_s': round(audio / seconds, 1),
                        'wer': round(scores['wer'], 2), 'cer': round(scores['cer'], 2),
                        'accuracy': round(scores['accuracy'], 2)}), flush=True)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  main()
