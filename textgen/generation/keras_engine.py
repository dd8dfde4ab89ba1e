"""The model's forward pass as a compiled TensorFlow step, for GPUs and big batches.

Same contract as the NumPy engine: ``step(tokens, state) -> (logits, state)``
with NumPy arrays in and out, so the sampler and beam search never know which
engine they have. The step is built from Keras's own cells (``LSTMCell``,
``GRUCell``, ``SimpleRNNCell``) holding the saved weights, and wrapped in one
``tf.function`` with a fixed input signature: traced once, never per call.

The weights come from ``model.keras`` through artifacts.read_keras_archive,
never through ``keras.models.load_model``, so loading runs no code from the file.
"""

import keras
import numpy as np
import tensorflow as tf

from textgen.saved.artifacts import read_keras_archive
from textgen.errors import TextgenError

CELLS = {"SimpleRNN": keras.layers.SimpleRNNCell, "LSTM": keras.layers.LSTMCell, "GRU": keras.layers.GRUCell}
STATES_PER_CELL = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}


class KerasEngine:
    """A saved textgen model's forward pass, one compiled step at a time."""

    def __init__(self, layers):
        self.cells, self.state_counts = [], []
        embedding = output = None
        for layer in layers:
            arrays = [np.asarray(array, dtype=np.float32) for array in layer.weights]
            if layer.class_name == "Embedding":
                embedding = arrays[0]  # (vocabulary, embedding_dim)
            elif layer.class_name in CELLS:
                input_dim, units = arrays[0].shape[0], arrays[1].shape[0]
                cell = CELLS[layer.class_name](units)
                cell.build((None, input_dim))
                cell.set_weights(arrays)
                self.cells.append(cell)
                self.state_counts.append(STATES_PER_CELL[layer.class_name])
            elif layer.class_name == "Dense":
                output = arrays  # kernel (units, vocabulary), bias (vocabulary,)
        if embedding is None or output is None or not self.cells:
            raise TextgenError("the model archive lacks an embedding, a recurrent or an output layer")
        self.embedding = tf.constant(embedding)
        self.output_kernel, self.output_bias = tf.constant(output[0]), tf.constant(output[1])
        state_specs = [tf.TensorSpec((None, cell.units), tf.float32)
                       for cell, count in zip(self.cells, self.state_counts) for _ in range(count)]
        self._compiled_step = tf.function(
            self._step, input_signature=[tf.TensorSpec((None,), tf.int32), state_specs], reduce_retracing=True
        )

    @classmethod
    def from_saved_model(cls, saved_model):
        layers, _ = read_keras_archive(saved_model.model_path)
        return cls(layers)

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
        return [tuple(np.zeros((batch_size, cell.units), np.float32) for _ in range(count))
                for cell, count in zip(self.cells, self.state_counts)]

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
