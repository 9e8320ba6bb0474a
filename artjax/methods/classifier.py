"""Supervised image classification: not a generative family, but the feature net `artjax.evaluate` measures in."""

import jax.numpy as jnp
import optax

from artjax.methods import METHODS
from artjax.methods.base import SingleLossMethod, apply_module, split_variables


@METHODS.register("classifier")
class Classifier(SingleLossMethod):
  """Softmax cross-entropy on batch["label"]; config.model returns (logits, features). No prior/decode: configs
  set sample_every=0."""

  def init(self, rng, batch):
    return split_variables(self.model.init(rng, batch["image"], train=False))

  def loss(self, params, model_state, batch, rng):
    (logits, _), model_state = apply_module(self.model, params, model_state, batch["image"], train=True,
                                            rngs={"dropout": rng})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, (model_state, {"accuracy": accuracy})

  def features(self, params, model_state, images):
    """Inference (dropout off): images in config.data's format -> (features (B, hidden), logits (B, classes))."""
    (logits, features), _ = apply_module(self.model, params, model_state, images, train=False)
    return features, logits
