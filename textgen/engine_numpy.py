"""The RNN equations in NumPy: the model's forward pass without TensorFlow.

This is where a learner reads the math. Each cell turns the previous state and
the current input into the next state; x is the layer's input at one time step
(batch, input_dim), h the hidden state (batch, units), and W, U, b the kernel,
recurrent kernel and bias exactly as Keras stores them in ``model.keras``.

    SimpleRNN  h' = tanh(x W + h U + b)
    LSTM       i, f, g, o = split(x W + h U + b)          (Keras's gate order)
               c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
               h' = sigmoid(o) * tanh(c')
    GRU        (Keras's reset_after=True form, the cuDNN one; b has two rows)
               xz, xr, xh = split(x W + b[0])   hz, hr, hh = split(h U + b[1])
               z = sigmoid(xz + hz)   r = sigmoid(xr + hr)
               h' = z * h + (1 - z) * tanh(xh + r * hh)

The engine's contract, shared with any other engine:
``step(tokens, state) -> (logits, state)`` with tokens (batch,) int and
logits (batch, vocabulary) float32. ``run`` does the same over a whole
sequence, computing each layer's input projection ``x W + b`` for all time
steps in one matrix product, so only ``h U`` remains inside the time loop.
"""

import numpy as np

from textgen.artifacts import read_keras_archive
from textgen.errors import TextgenError


def sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # = 1 / (1 + exp(-x)), without overflow warnings


class SimpleRNNCell:
    def __init__(self, kernel, recurrent_kernel, bias):
        self.kernel, self.recurrent_kernel, self.bias = kernel, recurrent_kernel, bias
        self.units = recurrent_kernel.shape[0]

    def zero_state(self, batch_size):
        return (np.zeros((batch_size, self.units), np.float32),)

    def project_inputs(self, inputs):
        return inputs @ self.kernel + self.bias  # (..., units)

    def recur(self, projected, state):
        (h,) = state
        h = np.tanh(projected + h @ self.recurrent_kernel)  # (batch, units)
        return h, (h,)


class LSTMCell:
    def __init__(self, kernel, recurrent_kernel, bias):
        self.kernel, self.recurrent_kernel, self.bias = kernel, recurrent_kernel, bias
        self.units = recurrent_kernel.shape[0]

    def zero_state(self, batch_size):
        zeros = np.zeros((batch_size, self.units), np.float32)
        return (zeros, zeros.copy())  # (h, c)

    def project_inputs(self, inputs):
        return inputs @ self.kernel + self.bias  # (..., 4 * units)

    def recur(self, projected, state):
        h, c = state
        gates = projected + h @ self.recurrent_kernel  # (batch, 4 * units)
        i, f, g, o = np.split(gates, 4, axis=-1)  # input, forget, candidate, output
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return h, (h, c)


class GRUCell:
    def __init__(self, kernel, recurrent_kernel, bias):
        if bias.ndim != 2:
            raise TextgenError("only GRU layers with reset_after=True (Keras's default) are supported")
        self.kernel, self.recurrent_kernel = kernel, recurrent_kernel
        self.input_bias, self.recurrent_bias = bias[0], bias[1]
        self.units = recurrent_kernel.shape[0]

    def zero_state(self, batch_size):
        return (np.zeros((batch_size, self.units), np.float32),)

    def project_inputs(self, inputs):
        return inputs @ self.kernel + self.input_bias  # (..., 3 * units)

    def recur(self, projected, state):
        (h,) = state
        inner = h @ self.recurrent_kernel + self.recurrent_bias  # (batch, 3 * units)
        xz, xr, xh = np.split(projected, 3, axis=-1)
        hz, hr, hh = np.split(inner, 3, axis=-1)
        z = sigmoid(xz + hz)  # update gate: how much of the old state to keep
        r = sigmoid(xr + hr)  # reset gate: how much of the old state feeds the candidate
        candidate = np.tanh(xh + r * hh)
        h = z * h + (1.0 - z) * candidate
        return h, (h,)


CELLS = {"SimpleRNN": SimpleRNNCell, "LSTM": LSTMCell, "GRU": GRUCell}


class NumpyEngine:
    """A saved textgen model's forward pass, one step or one sequence at a time."""

    def __init__(self, layers):
        self.cells = []
        self.embedding = self.output_kernel = self.output_bias = None
        for layer in layers:
            arrays = [np.asarray(array, dtype=np.float32) for array in layer.weights]
            if layer.class_name == "Embedding":
                (self.embedding,) = arrays  # (vocabulary, embedding_dim)
            elif layer.class_name in CELLS:
                self.cells.append(CELLS[layer.class_name](*arrays))
            elif layer.class_name == "Dense":
                self.output_kernel, self.output_bias = arrays  # (units, vocabulary), (vocabulary,)
            # InputLayer and Dropout have no weights and do nothing at inference.
        if self.embedding is None or self.output_kernel is None or not self.cells:
            raise TextgenError("the model archive lacks an embedding, a recurrent or an output layer")

    @classmethod
    def from_file(cls, path):
        layers, _ = read_keras_archive(path)
        return cls(layers)

    @property
    def vocabulary_size(self):
        return self.output_kernel.shape[1]

    def initial_state(self, batch_size):
        """Zero states: one tuple of (batch, units) arrays per layer."""
        return [cell.zero_state(batch_size) for cell in self.cells]

    def step(self, tokens, state):
        """tokens (batch,) -> logits (batch, vocabulary) and the next state."""
        hidden = self.embedding[np.asarray(tokens)]  # (batch, embedding_dim)
        next_state = []
        for cell, layer_state in zip(self.cells, state):
            hidden, layer_state = cell.recur(cell.project_inputs(hidden), layer_state)
            next_state.append(layer_state)
        return hidden @ self.output_kernel + self.output_bias, next_state

    def run(self, tokens, state):
        """tokens (batch, time) -> logits (batch, time, vocabulary) and the state after the last step.

        Runs layer by layer: each layer's input projection for every time step
        is one matrix product, and only the recurrent part loops over time.
        """
        hidden = self.embedding[np.asarray(tokens)]  # (batch, time, embedding_dim)
        next_state = []
        for cell, layer_state in zip(self.cells, state):
            projected = cell.project_inputs(hidden)  # (batch, time, gates * units)
            outputs = np.empty(projected.shape[:2] + (cell.units,), np.float32)  # (batch, time, units)
            for t in range(projected.shape[1]):
                outputs[:, t], layer_state = cell.recur(projected[:, t], layer_state)
            hidden = outputs
            next_state.append(layer_state)
        return hidden @ self.output_kernel + self.output_bias, next_state
