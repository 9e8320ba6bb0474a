"""The classic MNIST CNN (Keras' mnist_cnn example), used as the feature net of artjax's FID-style metrics."""

import flax.linen as nn

from artjax.models import MODELS


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

  @nn.compact
  def __call__(self, x, train: bool = False):
    c1, c2 = self.conv_channels
    x = nn.relu(nn.Conv(c1, (3, 3), padding="VALID")(x))
    x = nn.relu(nn.Conv(c2, (3, 3), padding="VALID")(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.Dropout(self.conv_dropout, deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.Dropout(self.hidden_dropout, deterministic=not train)(features)
    return nn.Dense(self.num_classes)(x), features


@MODELS.register("cnn_classifier")
def cnn_classifier(num_classes=10, conv_channels=(32, 64), hidden=128, conv_dropout=0.25, hidden_dropout=0.5):
  return CNNClassifier(num_classes, tuple(conv_channels), hidden, conv_dropout, hidden_dropout)
