r"""nanoGPT's GPU baseline for char-level tiny Shakespeare: 6 layers, 6 heads, 384-d, context 256 (val loss 1.4697).

  python -m artjax.train --config configs/text/shakespeare_char_gpu.py --workdir runs/shakespeare_char_gpu \
      --config.data.path=/path/to/tiny_shakespeare/input.txt

config/train_shakespeare_char.py of nanoGPT: batch 64, 5000 iterations, dropout 0.2, lr 1e-3 cosine to
1e-4 after 100 warm-up steps, AdamW(b2=0.99, weight decay 0.1), gradient clipping 1.0, no biases. About
3 minutes on an A100 there (bf16 autocast). Here: bf16 compute with float32 params and logits, and cuDNN
flash attention (model.attention='auto' picks it on GPUs). `:smoke` shrinks it (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 5000
  c.batch_size = 64
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  # TFDS instead: --config.data.name=tfds_text --config.data.tfds_data_dir=DIR (prepared as array_record)
  c.data = dict(name="text", path="", tfds_name="tiny_shakespeare", tfds_data_dir="",
                seq_len=256, val_fraction=0.1, tokenizer="char", vocab="", specials=[],
                min_count=1, shuffle=True, num_threads=2)
  c.model = dict(name="transformer", remat="none", scan_layers=False,  # remat: none|dots|full
                 num_layers=6, num_heads=6, emb_dim=384, max_len=256, dropout=0.2,
                 positions="learned", tie_weights=True, use_bias=False, dtype="bfloat16",
                 attention="auto")  # auto: cuDNN flash attention on GPUs in bf16, else XLA
  c.method = dict(name="autoregressive", sample_tokens=500, temperature=0.8)
  c.optimizer = dict(name="adamw", lr=1e-3, end_lr=1e-4, schedule="warmup_cosine", warmup_steps=100,
                     b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1, weight_decay_on="matrices", grad_clip_norm=1.0)
  c.ema_decay = 0.0
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.eval_every = 250
  c.eval_batches = 0
  c.sample_every = 2500
  c.num_samples = 2
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 4
    c.data.seq_len = c.model.max_len = 16
    c.model.update(num_layers=1, num_heads=2, emb_dim=16, dtype="float32")
    c.method.sample_tokens = 20
    c.log_every = c.eval_every = c.sample_every = c.checkpoint_every = 2
    c.eval_batches = 2
  return c
