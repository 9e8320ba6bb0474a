r"""A small Transformer on JSB Chorales piano rolls, in the TCN paper's setting (not one of its rows).

  python -m artjax.train --config configs/music/jsb_transformer.py --workdir runs/jsb_transformer \
      --config.data.dir=/path/to/jsb_chorales
  python -m artjax.evaluate --workdir runs/jsb_transformer --split test     # NLL in nats per frame

Frames in through a Dense layer, 88 Bernoulli logits out; 4 pre-LN blocks of 128 dimensions with rotary
positions. 229 chorales overfit a Transformer within a few hundred steps: with dropout 0.3 the
validation NLL was best (8.78) at step 500 of 3000 and 10.31 at the end; transposing by up to 6
semitones instead stopped the overfitting but reached only 8.82 in 1500 steps (the test set is in the
original keys). So: dropout 0.5, 1200 steps of batches of 8 whole chorales, AdamW with cosine decay,
and a checkpoint every 200 steps kept for model selection on the validation split. Data, loss and
metric as configs/music/jsb_tcn.py. Results: experiments/README.md.
"""

import ml_collections

TRAIN_CHORALES = 229


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 1200  # ~42 epochs of 229 chorales in batches of 8
  c.batch_size = 8
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="jsb_chorales", dir="", file="JSB_Chorales.mat", representation="roll", seq_len=160,
                transpose=0, steps_per_quarter=1, num_keys=88, shuffle=True, num_threads=1)
  c.model = dict(name="transformer", remat="none", scan_layers=False,  # remat: none|dots|full
                 num_layers=4, num_heads=4, emb_dim=128, max_len=161, dropout=0.5,
                 positions="rotary", tie_weights=False, use_bias=True, dtype="float32", attention="auto")
  c.method = dict(name="piano_roll", sample_frames=64, temperature=1.0, bpm=80.0)
  c.optimizer = dict(name="adamw", lr=1e-3, end_lr=1e-5, schedule="warmup_cosine", warmup_steps=100,
                     weight_decay=0.1, weight_decay_on="matrices", grad_clip_norm=1.0)
  c.ema_decay = 0.0
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 100
  c.eval_every = 200
  c.eval_batches = 0
  c.sample_every = 0
  c.num_samples = 4
  c.checkpoint_every = 200
  c.keep_checkpoints = 6  # all of them: the test NLL is read at the best validation step

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 2
    c.data.seq_len = 16
    c.model.update(num_layers=1, num_heads=2, emb_dim=16, max_len=17)
    c.method.sample_frames = 8
    c.log_every = c.eval_every = c.sample_every = c.checkpoint_every = 2
    c.eval_batches = 2
  return c
