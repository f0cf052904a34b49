r"""A speech Transformer on LibriSpeech 960 h, sized as fairseq's `s2t_transformer_s`.

fairseq speech-to-text (Wang et al. 2020), examples/speech_to_text LibriSpeech recipe: 80
log-mel bins, SpecAugment LB, 12 encoder and 6 decoder layers of width 256, 4 heads, FFN
2048, dropout 0.1, pre-LayerNorm, sinusoidal positions, a 10,000-unit unigram SentencePiece
vocabulary, decoder input and output embeddings shared, label smoothing 0.1, Adam (lr 2e-3,
inverse-sqrt after 10,000 warm-up updates), 300,000 updates. Its table lists the model at 30M
parameters; counted from its definition: 1,721,856 in the conv subsampler (two Conv1d over
time, kernel 5, stride 2, 80 -> 1024 and 512 -> 512 channels, each halved by a GLU) +
15,781,376 encoder + 9,473,024 decoder + 2,560,000 embedding = 29,536,256.

Ours differs in the subsampler only: model.frontend='audio_conv' is two 3x3 stride-2
convolutions over (time, frequency) with 256 channels (ESPnet's Conv2dSubsampling; 4x in
time as fairseq's), then a projection of 20 x 256 to 256. `--mode=info` prints our count
(29,718,016: 1,903,616 in the subsampler, and 27,814,400 in the rest, as fairseq's to the
parameter; the 'ctc' variant adds the CTC head, 256 x 10,000 + 10,000).
With ctc_weight (the 'ctc' variant, 0.3 as ESPnet's LibriSpeech recipe) a CTC head on the
encoder joins the loss (Kim et al. 2017) and `--config.decode.method=ctc_greedy` decodes with
it alone.

  python launch.py --config=experiments/librispeech_transformer.py --workdir=runs/ls_tf
  python launch.py --config=experiments/librispeech_transformer.py --mode=info
"""
import ml_collections

from common import base_config, check_variant, decode, speech_data

VARIANTS = ('', 'ctc')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='speech',
      batch_size=128,
      train_steps=300_000,
      eval_every_steps=10_000,
      checkpoint_every_steps=5_000,
      log_every_steps=100,
      keep_checkpoints=3)
  c.seed = 1
  c.data = speech_data(targets='sentencepiece', spm_vocab_size=10_000,
                       spm_model_type='unigram', target_len=200)
  # Compile the train step for every length bucket before the first step, 2 at a time.
  c.precompile_threads = 2
  c.model = dict(name='transformer', frontend=dict(name='audio_conv', channels=256, num_mels=80,
                                             spec_augment=(2, 27, 2, 100, 1.0)),
                 emb_dim=256, num_heads=4, qkv_dim=256,
                 mlp_dim=2048, num_encoder_layers=12, num_decoder_layers=6, dropout_rate=0.1,
                 attention_dropout_rate=0.1, positions='sinusoidal', pre_norm=True,
                 tie_output=True, max_len=1024, ctc_weight=0.3 if arg == 'ctc' else 0.0)
  c.optimizer = dict(name='adam', learning_rate=2e-3, b1=0.9, b2=0.98, eps=1e-8,
                     schedule='rsqrt', warmup_steps=10_000, grad_clip_norm=10.0)
  c.decode = decode(beam_size=5, alpha=1.0, max_len=200)
  return c
