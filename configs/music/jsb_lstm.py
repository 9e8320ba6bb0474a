r"""LSTM on JSB Chorales piano rolls: Bai, Kolter & Koltun 2018, Table 1 (LSTM 8.45 nats per frame).

  python -m artjax.train --config configs/music/jsb_lstm.py --workdir runs/jsb_lstm \
      --config.data.dir=/path/to/jsb_chorales          # holds JSB_Chorales.mat
  python -m artjax.evaluate --workdir runs/jsb_lstm --split test     # NLL in nats per frame

The paper's LSTM row: 2 layers of 200 units, dropout 0.2; trained as the TCN (one whole chorale per
step, Adam 1e-3, 100 epochs; gradient clipping 1.0, the paper does not list it for this row). Data,
loss and metric as configs/music/jsb_tcn.py. Results: experiments/README.md.
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
  c.model = dict(name="lstm", dtype="float32", emb_dim=200, hidden_dim=200, num_layers=2, dropout=0.2, max_len=161,
                 tie_weights=False)
  c.method = dict(name="piano_roll", sample_frames=64, temperature=1.0, bpm=80.0)
  c.optimizer = dict(name="adam", lr=1e-3, grad_clip_norm=1.0)
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
    c.model.update(emb_dim=8, hidden_dim=16, max_len=17)
    c.method.sample_frames = 8
    c.log_every = c.eval_every = c.sample_every = c.checkpoint_every = 2
    c.eval_batches = 2
  return c
