"""The classic MNIST CNN (Keras' mnist_cnn example), used as the feature net of artjax's FID-style metrics.

`dtype` is the compute dtype ('bfloat16' on GPUs/TPUs), with float32 parameters and float32 outputs
(logits and features: the metrics' statistics are computed in float32).
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.layers import conv, dense


class CNNClassifier(nn.Module):
  """image (B, H, W, C) -> (logits (B, num_classes), features (B, hidden)): the penultimate ReLU activations.

  conv3x3(32)-relu-conv3x3(64)-relu-maxpool2-dropout(0.25)-flatten-dense(128)-relu-dropout(0.5)-dense.
  Convolutions are VALID as in the original (28 -> 26 -> 24 -> 12), so inputs need >= 6 px.
  """
  num_classes: int = 10
  conv_channels: tuple[int, int] = (32, 64)
  hidden: int = 128
  conv_dropout: float = 0.25
  hidden_dropout: float = 0.5
  dtype: str = "float32"  # compute dtype; parameters, logits and features stay float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    d = jnp.dtype(self.dtype)
    c1, c2 = self.conv_channels
    x = nn.relu(conv(c1, (3, 3), padding="VALID", dtype=d)(x.astype(d)))
    x = nn.relu(conv(c2, (3, 3), padding="VALID", dtype=d)(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.Dropout(self.conv_dropout, deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(dense(self.hidden, ("conv_in", "mlp"), dtype=d)(x))
    x = nn.Dropout(self.hidden_dropout, deterministic=not train)(features)
    logits = dense(self.num_classes, ("mlp", None), dtype=d)(x)
    return logits.astype(jnp.float32), features.astype(jnp.float32)


@MODELS.register("cnn_classifier")
def cnn_classifier(num_classes=10, conv_channels=(32, 64), hidden=128, conv_dropout=0.25, hidden_dropout=0.5,
                   dtype="float32"):
  return CNNClassifier(num_classes, tuple(conv_channels), hidden, conv_dropout, hidden_dropout, dtype)
