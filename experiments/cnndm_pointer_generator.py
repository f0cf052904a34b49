r"""Pointer-generator with coverage on CNN/DailyMail (See, Liu and Manning 2017).

The paper's model (Sec. 2, Sec. 5 "Experiments" and its code, abisee/pointer-generator):
one 50k word vocabulary shared by article and summary and one 128-d embedding table; a
single-layer bidirectional LSTM encoder of 256 per direction; its final (c, h) reduced to the
256-d decoder by ReLU(W [fwd; bwd] + b) (bridge='reduce'); a single-layer 256-d LSTM decoder
whose input is W [E y_{t-1}; h*_{t-1}] + b; additive attention of 512 units queried by the
whole decoder state (attention='see'); output V [h_t; h*_t] + b -> 50k softmax. Adagrad,
learning rate 0.15, initial accumulator 0.1, gradient norm clipped at 2, batch 16; articles
truncated to 400 tokens and summaries to 100 in training (the paper starts at 50/... and grows
the truncation; we train at the final lengths); beam search of 4, lowercased text.

Parameter counts (--mode=info), as the paper reports them in Sec. 5:
  :baseline                     21,499,600   (paper: 21,499,600)
  :pointer (default variant)    21,500,753   (+1,153 for w_h*, w_s, w_x, b_ptr; paper: 1,153)
  :coverage                     21,501,265   (+512 for w_c; paper: 512)
The paper trains the pointer-generator for 230,000 iterations (12.8 epochs, 3 days 4 hours on
a Tesla K40m) and then adds coverage for a final 3,000 iterations: train `:pointer`, then warm-
start `:coverage` from it (seq2seq_jax/trainer/warm_start.py: its parameters and vocabulary; w_c starts
fresh):
  python launch.py --config=experiments/cnndm_pointer_generator.py --workdir=runs/cnndm_pg
  python launch.py --config=experiments/cnndm_pointer_generator.py:coverage \
      --config.init_from=runs/cnndm_pg --config.train_steps=3000 --workdir=runs/cnndm_pgc
`:coverage` alone trains with coverage from the start.

Data: TFDS `cnn_dailymail` (the non-anonymized version, `tfds build cnn_dailymail
--file_format=array_record` where it can be downloaded), read without TensorFlow.

  python launch.py --config=experiments/cnndm_pointer_generator.py --mode=info
"""
import ml_collections

from common import base_config, decode, summarization_data

VARIANTS = ('pointer', 'baseline', 'coverage')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = arg or 'pointer'
  if arg not in VARIANTS:
    raise ValueError(f'unknown config variant {arg!r} (known: {", ".join(VARIANTS)})')
  c = base_config(
      task='summarization',
      batch_size=16,
      train_steps=230_000,
      eval_every_steps=10_000,
      checkpoint_every_steps=2_000,
      log_every_steps=100,
      label_smoothing=0.0)
  c.data = summarization_data(
      source='tfds', tfds_name='cnn_dailymail',
      train_split='train', eval_split='validation', test_split='test',
      vocab_type='word', vocab_size=50_000, lowercase=True,
      max_source_len=400, max_target_len=100, buckets=(100, 200, 300, 401),
      eval_batch_size=64, eval_max_examples=2000)  # validation subset during training
  c.model = dict(
      name='rnn', cell='lstm', emb_dim=128, hidden_dim=256, decoder_hidden_dim=256,
      encoder_layers=1, decoder_layers=1, bidirectional=True, dropout_rate=0.0,
      attention='see', attention_dim=512, input_feeding=False,
      readout='linear', readout_dim=256, bridge='reduce', share_embeddings=True,
      init_scale=0.02,             # their rand_unif_init_mag 0.02 (LSTM; trunc-normal 1e-4 else)
      copy=arg != 'baseline', max_oovs=400,  # every article word could be an OOV
      coverage=arg == 'coverage', coverage_loss_weight=1.0)
  c.optimizer = dict(name='adagrad', learning_rate=0.15, initial_accumulator_value=0.1,
                     schedule='constant', grad_clip_norm=2.0)
  c.decode = decode(beam_size=4, alpha=0.0, max_len=120)
  return c
