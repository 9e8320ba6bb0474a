r"""Coconet on JSB Chorales as four voices (SATB) at 16th-note steps: Huang et al. 2017.

  python -m artjax.train --config configs/music/jsb_coconet.py --workdir runs/jsb_coconet \
      --config.data.dir=/path/to/jsb_chorales          # holds Jsb16thSeparated.json
  python -m artjax.sample --workdir runs/jsb_coconet --harmonize melody.mid --out chorale.wav

Data: `Jsb16thSeparated.json` (the Coconet authors' file: the Boulanger-Lewandowski split, S/A/T/B
pitches per 16th note), crops of 64 steps (4 bars), random transposition by up to 3 semitones within
the voices' range 36..81. The paper's network has 64 layers of 128 channels (batch norm); this config
(`:gpu`) is 32 x 128 and the default is 16 x 64 so that a CPU can train it. Loss: the NLL of randomly
hidden notes (orderless NADE, u ~ U(0, 1) per example). Sampling: annealed blocked Gibbs
(p_max 0.9 -> p_min 0.05 over eta = 3/4 of the iterations). Results: experiments/README.md.
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 20000
  c.batch_size = 16
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="jsb_chorales", dir="", file="Jsb16thSeparated.json", representation="voices",
                seq_len=64, transpose=3, low_pitch=36, high_pitch=81, num_pitches=46, steps_per_quarter=4,
                shuffle=True, num_threads=1)
  c.model = dict(name="coconet", channels=64, num_layers=16, kernel_size=3, dtype="float32")
  c.method = dict(name="coconet", gibbs_steps=128, p_max=0.9, p_min=0.05, eta=0.75, temperature=1.0,
                  sample_frames=64, bpm=80.0)
  c.optimizer = dict(name="adam", lr=1e-3, end_lr=1e-5, schedule="warmup_cosine", warmup_steps=200,
                     grad_clip_norm=1.0)
  c.ema_decay = 0.0
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 100
  c.eval_every = 2000
  c.eval_batches = 0
  c.sample_every = 0
  c.num_samples = 4
  c.checkpoint_every = 2000
  c.keep_checkpoints = 2

  if arg == "gpu":
    c.total_steps = 8000
    c.batch_size = 64
    c.model.update(channels=128, num_layers=32, dtype="bfloat16")
    c.eval_every = c.checkpoint_every = 4000
  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 2
    c.data.seq_len = 16
    c.model.update(channels=8, num_layers=4)
    c.method.update(sample_frames=8, gibbs_steps=4)
    c.log_every = c.eval_every = c.sample_every = c.checkpoint_every = 2
    c.eval_batches = 2
  return c
