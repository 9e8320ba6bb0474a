r"""A small GPT on Tang poems (全唐诗, chinese-poetry layout): one poem per sequence, <eos> poem <eos>.

  python -m artjax.train --config configs/poetry/tang_transformer.py --workdir runs/tang \
      --config.data.dir=/path/to/chinese_poetry

Then poems in a given form, or acrostic (藏头诗), guaranteed by masking the logits while decoding:

  python -m artjax.sample --workdir runs/tang --form 五言绝句 --n 4 --temperature 0.8 --out jueju.txt
  python -m artjax.sample --workdir runs/tang --acrostic 春夏秋冬 --script simplified --out acrostic.txt

The Tang files are in traditional characters; --script simplified converts the output (OpenCC).
Validation: the poems whose content hash falls in the last 10% (stable when files are added). Context
80 covers every 绝句 and 律诗 (<eos> + 64 characters + <eos> for 七言律诗); longer poems are cut.
`:smoke` shrinks it (tests); results: experiments/README.md.
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 2000  # ~14 epochs of the 4.5k training poems
  c.batch_size = 32
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="chinese_poetry", dir="", files=["全唐诗/*.json"], script="", max_chars=0,
                seq_len=80, val_fraction=0.1, tokenizer="char", vocab="", specials=[], min_count=1,
                shuffle=True, num_threads=1)
  c.model = dict(name="transformer", remat="none", scan_layers=False,  # remat: none|dots|full
                 num_layers=4, num_heads=4, emb_dim=256, max_len=80, dropout=0.2,
                 positions="rotary", tie_weights=True, use_bias=False, dtype="float32",
                 attention="auto")  # auto: cuDNN flash attention on GPUs in bf16, else XLA
  c.method = dict(name="poetry", sample_tokens=80, temperature=0.8)
  c.optimizer = dict(name="adamw", lr=1e-3, end_lr=1e-4, schedule="warmup_cosine", warmup_steps=100,
                     b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1, weight_decay_on="matrices", grad_clip_norm=1.0)
  c.ema_decay = 0.0
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.eval_every = 500
  c.eval_batches = 0
  c.sample_every = 1000
  c.num_samples = 4
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 4
    c.data.seq_len = c.model.max_len = 32
    c.model.update(num_layers=1, num_heads=2, emb_dim=16)
    c.method.sample_tokens = 20
    c.log_every = c.eval_every = c.sample_every = c.checkpoint_every = 2
    c.eval_batches = 2
  return c
