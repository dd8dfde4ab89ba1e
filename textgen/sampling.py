"""Sampling strategies: how the next token is chosen from the model's logits.

Each strategy is a small class with one override point, looked up by its
lowercase name (``get("temperature", temperature=0.8)``). Probabilities are
computed in float64 whatever the model's precision, so rare tokens keep their
small but real chance.
"""

import numpy as np

from textgen.errors import TextgenError


def log_softmax(logits):
    """log p for each row of logits (batch, vocabulary), computed stably."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Strategy:
    """Draws one token per row from softmax(adjust(logits)); subclasses override ``adjust``."""

    name = None

    def __init__(self, temperature=1.0):
        self.temperature = float(temperature)

    def adjust(self, logits):
        return logits

    def choose(self, logits, rng):
        """tokens (batch,) drawn from logits (batch, vocabulary)."""
        probabilities = np.exp(log_softmax(self.adjust(np.asarray(logits, np.float64))))
        cumulative = np.cumsum(probabilities, axis=-1)  # (batch, vocabulary)
        draws = rng.random((cumulative.shape[0], 1)) * cumulative[:, -1:]  # inverse-CDF sampling
        return np.minimum((cumulative < draws).sum(axis=-1), cumulative.shape[1] - 1)


class Temperature(Strategy):
    """softmax(logits / T): T < 1 sharpens towards the likeliest tokens, T > 1 flattens."""

    name = "temperature"

    def __init__(self, temperature=1.0):
        if not temperature > 0:
            raise TextgenError(f"temperature must be > 0 for random sampling, got {temperature!r}")
        super().__init__(temperature)

    def adjust(self, logits):
        return logits / self.temperature


class Greedy(Strategy):
    """Always the likeliest token (temperature 0): deterministic, and prone to loops."""

    name = "greedy"

    def choose(self, logits, rng):
        return np.argmax(logits, axis=-1)


STRATEGIES = {strategy.name: strategy for strategy in (Greedy, Temperature)}


def get(name, **settings):
    """The strategy registered as ``name``, built with ``settings``."""
    if name not in STRATEGIES:
        raise TextgenError(f"unknown sampling strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**settings)
