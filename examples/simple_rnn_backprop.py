"""Backpropagation through time for a one-layer SimpleRNN language model, in NumPy.

textgen trains with Keras; this file is for reading (examples/, not the package).
It is the whole training math of the simplest recurrent network, written out,
and tests/test_example_simple_rnn_backprop.py checks it
against finite differences and against TensorFlow's own gradients. The
weights have Keras's layout, so they are the same numbers a Keras model holds.

Forward, for a batch of B token windows of length T:

    x_t      = E[token_t]                       (B, D)  embedding rows
    h_t      = tanh(x_t W + h_{t-1} U + b)      (B, H)  h_0 = 0
    logits_t = h_t V + c                        (B, K)  K = vocabulary size
    loss     = mean over b, t of -log softmax(logits_t)[target_t]

Backward, from the last step to the first (the "through time" part: the
gradient reaching h_t comes from its own logits and from h_{t+1}):

    d logits_t = (softmax(logits_t) - onehot(target_t)) / (B T)
    dV += h_t^T d logits_t          dc += sum of d logits_t
    dh_t  = d logits_t V^T + da_{t+1} U^T
    da_t  = dh_t * (1 - h_t^2)      (tanh' = 1 - tanh^2)
    dW += x_t^T da_t    dU += h_{t-1}^T da_t    db += sum of da_t
    dE[token_t] += da_t W^T
"""

import numpy as np

PARAMETERS = ("embedding", "kernel", "recurrent_kernel", "bias", "output_kernel", "output_bias")


def initialize(vocabulary_size, embedding_dim, units, seed=0):
    """Small random parameters, a dict keyed by PARAMETERS (float64, for exact checks)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "embedding": (vocabulary_size, embedding_dim),  # E
        "kernel": (embedding_dim, units),  # W
        "recurrent_kernel": (units, units),  # U
        "bias": (units,),  # b
        "output_kernel": (units, vocabulary_size),  # V
        "output_bias": (vocabulary_size,),  # c
    }
    return {name: rng.normal(0.0, 0.5, shape) for name, shape in shapes.items()}


def forward(parameters, inputs, targets):
    """Mean cross-entropy of the targets, and what the backward pass needs.

    Args:
        parameters: a dict keyed by PARAMETERS.
        inputs, targets: int arrays (B, T); targets are the inputs shifted by one.
    """
    batch, steps = inputs.shape
    units = parameters["recurrent_kernel"].shape[0]
    hidden = np.zeros((steps + 1, batch, units))  # hidden[t + 1] = h_t; hidden[0] = h_0 = 0
    probabilities = []
    loss = 0.0
    for t in range(steps):
        x = parameters["embedding"][inputs[:, t]]  # (B, D)
        hidden[t + 1] = np.tanh(
            x @ parameters["kernel"] + hidden[t] @ parameters["recurrent_kernel"] + parameters["bias"]
        )
        logits = hidden[t + 1] @ parameters["output_kernel"] + parameters["output_bias"]  # (B, K)
        logits -= logits.max(axis=1, keepdims=True)  # stable softmax
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        probabilities.append(p)
        loss -= np.log(p[np.arange(batch), targets[:, t]]).sum()
    cache = {"inputs": inputs, "targets": targets, "hidden": hidden, "probabilities": probabilities}
    return loss / (batch * steps), cache


def backward(parameters, cache):
    """Gradients of the mean loss with respect to every parameter (same keys and shapes)."""
    inputs, targets, hidden = cache["inputs"], cache["targets"], cache["hidden"]
    batch, steps = inputs.shape
    gradients = {name: np.zeros_like(value) for name, value in parameters.items()}
    d_pre_activation_next = np.zeros_like(hidden[0])  # da_{t+1}, zero after the last step
    for t in reversed(range(steps)):
        d_logits = cache["probabilities"][t].copy()
        d_logits[np.arange(batch), targets[:, t]] -= 1.0
        d_logits /= batch * steps  # (B, K)
        gradients["output_kernel"] += hidden[t + 1].T @ d_logits
        gradients["output_bias"] += d_logits.sum(axis=0)
        d_hidden = d_logits @ parameters["output_kernel"].T + d_pre_activation_next @ parameters["recurrent_kernel"].T
        d_pre_activation = d_hidden * (1.0 - hidden[t + 1] ** 2)  # (B, H)
        x = parameters["embedding"][inputs[:, t]]
        gradients["kernel"] += x.T @ d_pre_activation
        gradients["recurrent_kernel"] += hidden[t].T @ d_pre_activation
        gradients["bias"] += d_pre_activation.sum(axis=0)
        # Rows of E used several times collect several gradients: add.at, not +=.
        np.add.at(gradients["embedding"], inputs[:, t], d_pre_activation @ parameters["kernel"].T)
        d_pre_activation_next = d_pre_activation
    return gradients
