r"""CTranslate2's side of the export checks: run in an environment with ctranslate2 (not this
project's requirements), e.g. /work/whisper_env/bin/python; imports nothing of seq2seq_jax.

Reads one JSON request on stdin, writes one JSON answer on stdout:

  {"model_dir": OUT, "sources": [[piece, ...], ...],
   "translate": {"beam_size": 4, "length_penalty": 1.0, "max_decoding_length": 128, ...},
   "targets": [[piece, ...], ...],                   # optional: score_batch on the pairs
   "warmup": true}                                  # optional: one untimed batch first
  -> {"hypotheses": [[piece, ...], ...], "seconds": s, "log_probs": [[float, ...], ...],
      "version": "4.8.5"}

`translate` holds Translator.translate_batch's keyword arguments; `hypotheses` are the best
hypothesis of each source (no end token), `seconds` the wall time of that one call (after
the warm-up batch, if asked for), `scores` their scores, and
`log_probs` score_batch's per-token log-probabilities of each target (its end token last).

  echo '{"model_dir": "/tmp/ct2", "sources": [["▁four"]]}' | \
      /work/whisper_env/bin/python tools/ctranslate2_translate.py
"""
import json
import os
import sys
import time


def run(request: dict) -> dict:
  import ctranslate2  # pylint: disable=g-import-not-at-top
  threads = int(request.get('intra_threads', 0)) or os.cpu_count() or 1
  translator = ctranslate2.Translator(request['model_dir'], device='cpu', inter_threads=1,
                                      intra_threads=threads)
  out = {'version': ctranslate2.__version__, 'intra_threads': threads}
  sources = request.get('sources') or []
  if 'translate' in request and sources:
    options = dict(request['translate'])
    if request.get('warmup'):   # one batch first, untimed (allocations, thread pool)
      translator.translate_batch(sources[:options.get('max_batch_size') or 32], **options)
    start = time.perf_counter()
    results = translator.translate_batch(sources, **options)
    out['seconds'] = time.perf_counter() - start
    out['hypotheses'] = [r.hypotheses[0] for r in results]
    out['scores'] = [r.scores[0] if r.scores else None for r in results]
  if request.get('targets'):
    scored = translator.score_batch(sources, request['targets'])
    out['log_probs'] = [list(map(float, r.log_probs)) for r in scored]
    out['scored_tokens'] = [list(r.tokens) for r in scored]
  return out


def main() -> None:
  json.dump(run(json.load(sys.stdin)), sys.stdout)
  sys.stdout.write('\n')


if __name__ == '__main__':
  main()
