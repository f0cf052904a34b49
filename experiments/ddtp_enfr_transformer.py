r"""Transformer English -> French on Debian's human-translated package descriptions (DDTP).

Real parallel text available offline: apt's Translation lists, aligned by Description-md5
into short-description and paragraph pairs (seq2seq_jax/datasets/ddtp.py). The TFDS
dataset `debian_ddtp/en-fr` is built on first use into data.data_dir from the lists (get them
once, as root: `apt-get -o Acquire::Languages=en,fr,de update`; $DDTP_LISTS_DIR points
elsewhere); it keeps a copy of the lists and their Release date. bookworm's lists give
47,152 train, 1,007 validation and 1,966 test pairs (about 1.0M English words), split by a
hash of the English text. Shared 8k BPE, packed rows, sacreBLEU and chrF; 7,578,624
parameters, sized for under an hour of a slow 2-core CPU: 600 steps of ~4 s on a host whose
2048^2 float32 matmul runs at 1.5e11 FLOP/s (README has the measured run).

  python launch.py --config=experiments/ddtp_enfr_transformer.py --workdir=runs/ddtp_transformer
  python launch.py --config=experiments/ddtp_enfr_transformer.py:smoke --workdir=/tmp/ddtp
  python launch.py --config=experiments/ddtp_enfr_transformer.py --mode=eval \
      --workdir=runs/ddtp_transformer --config.decode.beam_size=1        # greedy
  echo "Command-line tool to manage packages" | python launch.py \
      --config=experiments/ddtp_enfr_transformer.py --mode=predict --workdir=runs/ddtp_transformer
English -> German: --config.data.tgt_lang=de (30,900 train pairs); French -> English:
--config.data.src_lang=fr --config.data.tgt_lang=en.

Your own parallel text (docs/own_data.md), the same model and shared 8k BPE learnt from your
training pairs: ':tsv' (`source<TAB>target` lines) or ':files' (two aligned files, line i of
one translating line i of the other); ':tsv_smoke' and ':files_smoke' with the smoke model.

  python launch.py --config=experiments/ddtp_enfr_transformer.py:tsv --workdir=runs/my_mt \
      --config.data.train_tsv=train.tsv --config.data.eval_tsv=dev.tsv \
      --config.data.test_tsv=test.tsv
  python launch.py --config=experiments/ddtp_enfr_transformer.py:files --workdir=runs/my_mt \
      --config.data.train_files="('train.en','train.fr')" \
      --config.data.eval_files="('dev.en','dev.fr')" --config.data.test_files="('test.en','test.fr')"

A pretrained Marian (OPUS-MT) or BART checkpoint instead of the model above (':pretrained' on
DDTP, ':tsv_pretrained' on your TSV files; docs/translation.md): its architecture and
tokenizer, evaluated as it is when the workdir has no checkpoint, fine-tuned by --mode=train.

  python launch.py --config=experiments/ddtp_enfr_transformer.py:pretrained --mode=eval \
      --config.model.pretrained=opus-mt-en-fr --workdir=runs/ddtp_opus_mt
  python launch.py --config=experiments/ddtp_enfr_transformer.py:pretrained \
      --config.model.pretrained=opus-mt-en-fr --workdir=runs/ddtp_opus_mt
"""
import ml_collections

from common import (base_config, check_variant, decode, own_data, pretrained_model, smoke,
                    translation_data)

VARIANTS = ('', 'smoke', 'tsv', 'tsv_smoke', 'files', 'files_smoke', 'pretrained',
            'tsv_pretrained')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='translation',
      batch_size=32,  # rows of 128 tokens, 91% full: ~3,700 tokens per side
      # ~1.6 epochs (370 packed batches each): measured 4.1 s/step on a 1.5e11 FLOP/s host,
      # 41 min of training. A faster host or more time: raise train_steps (the cosine schedule
      # follows it); the validation BLEU was still rising at 600.
      train_steps=600,
      eval_every_steps=200,
      log_every_steps=25,
      label_smoothing=0.1)  # Vaswani et al. 2017, Sec. 5.4
  c.data = translation_data(
      source='tfds',
      tfds_name='debian_ddtp',        # the pair follows src_lang / tgt_lang (en-fr, en-de)
      src_lang='en', tgt_lang='fr',
      vocab_size=8000, shared_vocab=True, spm_model_type='bpe',
      spm_train_sentences=1_000_000,  # every training sentence (~95k on both sides)
      max_len=128,                    # keeps 96.7% of en-fr pairs; the rest are long lists
      packing=True,
      eval_batch_size=64, eval_max_examples=0)  # the whole validation / test split
  c.model = dict(name='transformer', emb_dim=256, num_heads=4, qkv_dim=256, mlp_dim=1024,
                 num_encoder_layers=3, num_decoder_layers=3, dropout_rate=0.1,
                 attention_dropout_rate=0.0, positions='sinusoidal',
                 pre_norm=True,       # stabler than the paper's post-LN at a high lr
                 share_embeddings=True, tie_output=True,  # one vocabulary for both sides
                 max_len=128)
  c.optimizer = dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.98, eps=1e-9,
                     schedule='cosine',  # a fixed budget: decay to 0 at train_steps
                     warmup_steps=150, grad_clip_norm=1.0)
  c.decode = decode(beam_size=4, alpha=0.6, max_len=128)
  if arg.endswith('smoke'):  # a minute: checks the whole path on the real data, learns little
    c.data.update(train_split='train[:5%]', vocab_size=1000, eval_max_examples=32,
                  eval_batch_size=32)
    smoke(c, batch_size=8, model=dict(emb_dim=32, qkv_dim=32, mlp_dim=64, num_encoder_layers=1,
                                      num_decoder_layers=1))
    c.decode.max_len = 32
  if arg.endswith('pretrained'):   # fine-tuning: a small learning rate, the checkpoint's model
    c.model = pretrained_model(dropout_rate=0.1)
    c.optimizer.update(learning_rate=5e-5, warmup_steps=50)
    c.decode.max_len = 256   # subword pieces of the checkpoint's vocabulary per output, at most
  if arg.startswith(('tsv', 'files')):
    form = 'tsv' if arg.startswith('tsv') else 'files'
    own_data(c, form, source=form)
  return c
