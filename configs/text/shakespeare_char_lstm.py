r"""A 2-layer LSTM (char-rnn) on char-level tiny Shakespeare, same data, split and context as shakespeare_char.py.

  python -m artjax.train --config configs/text/shakespeare_char_lstm.py --workdir runs/shakespeare_lstm \
      --config.data.path=/path/to/tiny_shakespeare/input.txt

Karpathy's char-rnn trains 2-3 layers of 512 units with truncated BPTT; this is sized for a CPU: 2 x 256
units over 64-character windows (the state starts from zero in every window), Adam 2e-3 with cosine decay.
`:smoke` shrinks it (tests); results: experiments/README.md.
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 2000
  c.batch_size = 32
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  # TFDS instead: --config.data.name=tfds_text --config.data.tfds_data_dir=DIR (prepared as array_record)
  c.data = dict(name="text", path="", tfds_name="tiny_shakespeare", tfds_data_dir="",
                seq_len=64, val_fraction=0.1, tokenizer="char", vocab="", specials=[],
                min_count=1, shuffle=True, num_threads=1)
  c.model = dict(name="lstm", dtype="float32", emb_dim=128, hidden_dim=256, num_layers=2, dropout=0.0, max_len=64,
                 tie_weights=False)
  c.method = dict(name="autoregressive", sample_tokens=300, temperature=0.8)
  c.optimizer = dict(name="adam", lr=2e-3, end_lr=1e-4, schedule="warmup_cosine", warmup_steps=100,
                     grad_clip_norm=1.0)
  c.ema_decay = 0.0
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.eval_every = 500
  c.eval_batches = 0
  c.sample_every = 1000
  c.num_samples = 2
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 4
    c.data.seq_len = 16
    c.model.update(emb_dim=8, hidden_dim=16, num_layers=2, max_len=16)
    c.method.sample_tokens = 20
    c.log_every = c.eval_every = c.sample_every = c.checkpoint_every = 2
    c.eval_batches = 2
  return c
