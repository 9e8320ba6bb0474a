"""PyTorch twin of artjax's `configs/gan/mnist_dcgan.py` train step (for tools/bench_vs_torch.py).

Same model as artjax.models.dcgan at image_size 28, base 32 / disc base 64, upsample='resize', batch norm:
  G: Dense(100 -> 7*7*128, no bias) BN ReLU, [nearest x2, 3x3 conv (no bias), BN, ReLU] x2 (128->64->32),
     3x3 conv 32->1 (bias), tanh;
  D: 4x4/2 conv 1->64 (bias) LeakyReLU(.2), 4x4/2 conv 64->128 (no bias) BN LeakyReLU(.2), Dense(6272 -> 1).
BatchNorm momentum 0.1 (= flax 0.9), eps 1e-5. Same step as artjax.methods.gan (non-saturating loss):
D on real then on detached fake (two train-mode passes), Adam(2e-4, 0.5, 0.999) step of D, then G's loss
through the *updated* D, Adam step of G; then (as artjax's train_step with config.ema_decay > 0) an EMA
of G's and D's weights. artjax's layout is NHWC; PyTorch's is NCHW (each framework's native one).
Derived from ../shared/perf/torch_dcgan.py (which has no EMA).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class G(nn.Module):
  def __init__(s, z=100):
    super().__init__()
    s.fc = nn.Linear(z, 7 * 7 * 128, bias=False); s.bn0 = nn.BatchNorm2d(128, momentum=0.1)
    s.c1 = nn.Conv2d(128, 64, 3, padding=1, bias=False); s.bn1 = nn.BatchNorm2d(64)
    s.c2 = nn.Conv2d(64, 32, 3, padding=1, bias=False); s.bn2 = nn.BatchNorm2d(32)
    s.out = nn.Conv2d(32, 1, 3, padding=1)

  def forward(s, z):
    x = F.relu(s.bn0(s.fc(z).view(-1, 128, 7, 7)))
    x = F.relu(s.bn1(s.c1(F.interpolate(x, scale_factor=2, mode="nearest"))))
    x = F.relu(s.bn2(s.c2(F.interpolate(x, scale_factor=2, mode="nearest"))))
    return torch.tanh(s.out(x))


class D(nn.Module):
  def __init__(s):
    super().__init__()
    s.c1 = nn.Conv2d(1, 64, 4, 2, 1); s.c2 = nn.Conv2d(64, 128, 4, 2, 1, bias=False); s.bn = nn.BatchNorm2d(128)
    s.fc = nn.Linear(7 * 7 * 128, 1)

  def forward(s, x):
    x = F.leaky_relu(s.c1(x), 0.2); x = F.leaky_relu(s.bn(s.c2(x)), 0.2)
    return s.fc(x.flatten(1))[:, 0]


def make_step(batch=128, latent=100, ema_decay=0.999):
  """A no-argument function running one training step on a fixed random 'real' batch."""
  torch.manual_seed(0)
  g, d = G(latent), D()
  og = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
  od = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
  params = [p for m in (g, d) for p in m.parameters()]
  ema = [p.detach().clone() for p in params]
  real = torch.rand(batch, 1, 28, 28) * 2 - 1
  count = [0]

  def step():
    fake = g(torch.randn(batch, latent))
    dl = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
    od.zero_grad(); dl.backward(); od.step()
    gl = F.softplus(-d(fake)).mean()
    og.zero_grad(); gl.backward(); og.step()
    if ema_decay:
      t = count[0]; count[0] += 1
      decay = min(ema_decay, (1.0 + t) / (10.0 + t))
      with torch.no_grad():
        torch._foreach_lerp_(ema, params, 1.0 - decay)
  return step
