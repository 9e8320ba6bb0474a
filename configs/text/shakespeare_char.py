r"""nanoGPT's CPU run of char-level tiny Shakespeare, exactly: 4 layers, 4 heads, 128-d, context 64, batch 12.

  python -m artjax.train --config configs/text/shakespeare_char.py --workdir runs/shakespeare_char \
      --config.data.path=/path/to/tiny_shakespeare/input.txt

(Timing against nanoGPT: `--config.eval_batches=20` estimates val loss from 20 batches as nanoGPT does;
the default scores the whole split, ~3 s per evaluation on a 2-core CPU, 9 evaluations per run.)

nanoGPT (README, "I only have a macbook"): `train.py config/train_shakespeare_char.py --device=cpu
--compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0` reaches val loss ~1.88 in ~3 min.
Everything not on that line is train_shakespeare_char.py / train.py's default: lr 1e-3 cosine to 1e-4
after 100 warm-up steps, AdamW(b1=0.9, b2=0.99, weight decay 0.1 on matrices only), gradient clipping 1.0,
no biases, tied embeddings, learned positions, first 90% of the text for training. Val loss here is over
the whole validation split (nanoGPT estimates it from 20 random batches). Sample:

  python -m artjax.sample --workdir runs/shakespeare_char --prompt "ROMEO:" --max-tokens 300 \
      --temperature 0.8 --out romeo.txt

`:smoke` is a few steps of a tiny model (tests); results: experiments/README.md.
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 2000
  c.batch_size = 12
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  # TFDS instead: --config.data.name=tfds_text --config.data.tfds_data_dir=DIR (prepared as array_record)
  c.data = dict(name="text", path="", tfds_name="tiny_shakespeare", tfds_data_dir="",
                seq_len=64, val_fraction=0.1, tokenizer="char", vocab="", specials=[],
                min_count=1, shuffle=True, num_threads=1)
  c.model = dict(name="transformer", remat="none", scan_layers=False,  # remat: none|dots|full
                 num_layers=4, num_heads=4, emb_dim=128, max_len=64, dropout=0.0,
                 positions="learned", tie_weights=True, use_bias=False, dtype="float32",
                 attention="auto")  # auto: cuDNN flash attention on GPUs in bf16, else XLA
  c.method = dict(name="autoregressive", sample_tokens=300, temperature=0.8)
  c.optimizer = dict(name="adamw", lr=1e-3, end_lr=1e-4, schedule="warmup_cosine", warmup_steps=100,
                     b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1, weight_decay_on="matrices", grad_clip_norm=1.0)
  c.ema_decay = 0.0
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.eval_every = 250
  c.eval_batches = 0  # 0: the whole validation split (111,540 characters)
  c.sample_every = 1000
  c.num_samples = 2
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 4
    c.data.seq_len = c.model.max_len = 16
    c.model.update(num_layers=1, num_heads=2, emb_dim=16)
    c.method.sample_tokens = 20
    c.log_every = c.eval_every = c.sample_every = c.checkpoint_every = 2
    c.eval_batches = 2
  return c
