r"""Listen, Attend and Spell (Chan, Jaitly, Le and Vinyals 2016) on LibriSpeech 960 h.

The paper's sizes (Sec. 4): the listener is a BLSTM on the input frames and 3 pyramidal BLSTM
layers on top (512 units each, 256 per direction; each pyramid layer concatenates adjacent
frames, 2^3 = 8x fewer time steps), the speller a 2-layer LSTM of 512 units with attention
over the listener's outputs, characters out, weights ~ U[-0.1, 0.1]. The paper trained on
Google voice search (2,000 h) with 40 log-mel bins; here LibriSpeech 960 h with 80 bins,
SpecAugment's LibriSpeech basic policy (Park et al. 2019, who trained LAS this way) and the
joint CTC loss at weight 0.2 as an option (ctc_weight; Kim et al. 2017 use 0.2-0.5).
Deviations: the bins are projected linearly to emb_dim before the first BLSTM; the speller's
attention is Luong's 'concat' scorer with input feeding (the paper's MLP scorer reads the new
state, as Luong's does); Adam instead of asynchronous SGD.

  python launch.py --config=experiments/librispeech_las.py --workdir=runs/librispeech_las
  python launch.py --config=experiments/librispeech_las.py --mode=info
  ls *.flac | python launch.py --config=experiments/librispeech_las.py --mode=predict \
      --workdir=runs/librispeech_las

Variants: '' attention only, 'ctc' joint CTC-attention (ctc_weight 0.2).
"""
import ml_collections

from common import base_config, check_variant, decode, speech_data

VARIANTS = ('', 'ctc')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='speech',
      batch_size=64,
      train_steps=300_000,
      eval_every_steps=10_000,
      checkpoint_every_steps=5_000,
      log_every_steps=100,
      keep_checkpoints=3)
  c.data = speech_data()
  # Compile the train step for every length bucket before the first step, 2 at a time.
  c.precompile_threads = 2
  c.model = dict(name='rnn', cell='lstm', frontend=dict(name='log_mel', num_mels=80,
                 spec_augment=(2, 27, 2, 100, 1.0)), emb_dim=256, hidden_dim=256,
                 encoder_layers=4, pyramid=3, bidirectional=True, decoder_layers=2,
                 decoder_hidden_dim=512, attention='concat', attention_dim=512,
                 input_feeding=True, readout='linear', bridge='none', dropout_rate=0.2,
                 init_scale=0.1, ctc_weight=0.2 if arg == 'ctc' else 0.0, max_len=600)
  c.optimizer = dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.98, eps=1e-9,
                     schedule='cosine', warmup_steps=4000, grad_clip_norm=1.0)
  c.decode = decode(beam_size=8, alpha=0.6, max_len=600)
  return c
