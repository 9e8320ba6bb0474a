"""PyTorch twin of artjax's Transformer + autoregressive train step (configs/text/shakespeare_char.py).

artjax.models.transformer at num_layers=4, num_heads=4, emb_dim=128, max_len=64, dropout 0, learned positions,
tied embeddings, no biases: token + position embeddings (init N(0, .02)), 4 pre-LN blocks
[LN (no bias, eps 1e-6 as flax) -> qkv Dense(128 -> 384) -> causal SDPA over 4 heads -> proj Dense(128 -> 128)
-> residual; LN -> Dense(128 -> 512) -> GELU (tanh approximation, flax's nn.gelu default) -> Dense(512 -> 128)
-> residual], final LN, logits = x @ wte^T. Step as artjax.methods.autoregressive + artjax.optim: mean
next-token cross-entropy over (B, T), global-norm clipping to 1.0, AdamW(b1 .9, b2 .99, eps 1e-8,
weight decay 0.1 on matrices only (ndim >= 2, as artjax's weight_decay_on='matrices'), lr warmup 100 steps
then cosine 1e-3 -> 1e-4 over 2000 (a LambdaLR; costs nothing measurable). Batch 12 x 64 tokens.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
  def __init__(s, c, heads):
    super().__init__()
    s.h = heads
    s.ln1 = nn.LayerNorm(c, eps=1e-6, bias=False); s.ln2 = nn.LayerNorm(c, eps=1e-6, bias=False)
    s.qkv = nn.Linear(c, 3 * c, bias=False); s.proj = nn.Linear(c, c, bias=False)
    s.fc = nn.Linear(c, 4 * c, bias=False); s.fc_proj = nn.Linear(4 * c, c, bias=False)

  def forward(s, x):
    b, t, c = x.shape
    q, k, v = s.qkv(s.ln1(x)).view(b, t, 3, s.h, c // s.h).permute(2, 0, 3, 1, 4)  # each (B, h, T, d)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
    x = x + s.proj(y)
    return x + s.fc_proj(F.gelu(s.fc(s.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
  def __init__(s, vocab, layers=4, heads=4, c=128, max_len=64):
    super().__init__()
    s.wte = nn.Embedding(vocab, c); s.wpe = nn.Embedding(max_len, c)
    s.blocks = nn.ModuleList([Block(c, heads) for _ in range(layers)])
    s.ln_f = nn.LayerNorm(c, eps=1e-6, bias=False)
    proj_std = 0.02 / math.sqrt(2 * layers)
    for name, p in s.named_parameters():
      if p.ndim >= 2:
        nn.init.normal_(p, std=proj_std if name.endswith(("proj.weight",)) else 0.02)

  def forward(s, tokens):
    x = s.wte(tokens) + s.wpe(torch.arange(tokens.shape[1]))[None]
    for blk in s.blocks:
      x = blk(x)
    return s.ln_f(x) @ s.wte.weight.T


def make_step(vocab=65, batch=12, seq=64, layers=4, heads=4, c=128, total_steps=2000, warmup=100):
  torch.manual_seed(0)
  model = GPT(vocab, layers, heads, c, seq)
  decay = [p for p in model.parameters() if p.ndim >= 2]
  no_decay = [p for p in model.parameters() if p.ndim < 2]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=1e-3, betas=(0.9, 0.99), eps=1e-8)

  def lr_at(i):  # optax.warmup_cosine_decay_schedule(0, 1e-3, 100, 2000, end_value=1e-4) / 1e-3
    if i < warmup:
      return i / warmup
    frac = min(1.0, (i - warmup) / max(1, total_steps - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))
  sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
  gen = torch.Generator().manual_seed(0)
  data = torch.randint(0, vocab, (64, batch, seq + 1), generator=gen)
  count = [0]

  def step():
    tokens = data[count[0] % 64]; count[0] += 1
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); sched.step()
  return step
