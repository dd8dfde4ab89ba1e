"""The model's forward pass as a compiled TensorFlow step, for GPUs and big batches.

Same contract as the NumPy engine (generation/engines.py), with NumPy arrays
in and out, so the sampler and beam search never know which engine they have.
The step is built from Keras's own cells (``LSTMCell``, ``GRUCell``,
``SimpleRNNCell``, named by the registry in cells.py) holding the saved
weights, and wrapped in one ``tf.function`` with a fixed input signature:
traced once, never per call. The weights arrive as a checked ``Network``
(saved/keras_archive.py): loading runs no code from the file.
"""

import keras
import numpy as np
import tensorflow as tf


class KerasEngine:
    """A textgen model's forward pass, one compiled step at a time."""

    def __init__(self, network):
        """``network``: a checked ``saved.keras_archive.Network``."""
        self.cells, self.state_counts = [], []
        for kind, arrays in network.recurrent:
            input_dim, units = arrays[0].shape[0], arrays[1].shape[0]
            cell = getattr(keras.layers, kind.keras_cell)(units)
            cell.build((None, input_dim))
            cell.set_weights(arrays)
            self.cells.append(cell)
            self.state_counts.append(kind.states)
        self.embedding = tf.constant(network.embedding)  # (vocabulary, embedding_dim)
        self.output_kernel = tf.constant(network.output_kernel)  # (units, vocabulary)
        self.output_bias = tf.constant(network.output_bias)  # (vocabulary,)
        state_specs = [
            tf.TensorSpec((None, cell.units), tf.float32)
            for cell, count in zip(self.cells, self.state_counts)
            for _ in range(count)
        ]
        self._compiled_step = tf.function(
            self._step, input_signature=[tf.TensorSpec((None,), tf.int32), state_specs], reduce_retracing=True
        )

    @property
    def vocabulary_size(self):
        return int(self.output_bias.shape[0])

    def _step(self, tokens, flat_state):
        hidden = tf.gather(self.embedding, tokens)  # (batch, embedding_dim)
        next_state, position = [], 0
        for cell, count in zip(self.cells, self.state_counts):
            hidden, layer_state = cell(hidden, list(flat_state[position : position + count]))
            next_state.extend(layer_state)
            position += count
        return tf.matmul(hidden, self.output_kernel) + self.output_bias, next_state  # (batch, vocabulary)

    def initial_state(self, batch_size):
        """Zero states: one tuple of (batch, units) arrays per layer, as in the NumPy engine."""
        return [
            tuple(np.zeros((batch_size, cell.units), np.float32) for _ in range(count))
            for cell, count in zip(self.cells, self.state_counts)
        ]

    def step(self, tokens, state):
        """tokens (batch,) -> logits (batch, vocabulary) and the next state, as NumPy arrays."""
        flat = [array for layer_state in state for array in layer_state]
        logits, flat = self._compiled_step(tf.constant(np.asarray(tokens, dtype=np.int32)), flat)
        next_state, position = [], 0
        for count in self.state_counts:
            next_state.append(tuple(array.numpy() for array in flat[position : position + count]))
            position += count
        return logits.numpy(), next_state

    def run(self, tokens, state):
        """tokens (batch, time) -> logits (batch, time, vocabulary), one compiled step per time step."""
        tokens = np.asarray(tokens)
        outputs = []
        for t in range(tokens.shape[1]):
            logits, state = self.step(tokens[:, t], state)
            outputs.append(logits)
        return np.stack(outputs, axis=1), state
