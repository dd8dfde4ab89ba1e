"""Log-probabilities from logits, computed stably in float64 whatever the model's precision.

Sampling, beam search and evaluation all turn logits into log p(token); rare
tokens keep their small but real probability here.
"""

import numpy as np


def logsumexp(logits):
    """log(sum(exp(logits))) of each row (batch, vocabulary) -> (batch,), in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    largest = logits.max(axis=-1)
    return largest + np.log(np.exp(logits - largest[:, np.newaxis]).sum(axis=-1))


def log_softmax(logits):
    """log p for each row of logits (batch, vocabulary), computed stably in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
