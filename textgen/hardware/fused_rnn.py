"""Recurrent layers that train through oneDNN's fused kernel on a CPU (hardware/onednn.py).

``LSTM``, ``GRU`` and ``SimpleRNN`` here are Keras's own layers with one
change: in float32 or mixed_bfloat16, a whole sequence goes through one oneDNN
call forward and one backward (a TensorFlow op with a custom gradient), instead
of Keras's loop of small ops per time step; the held-out pass after each epoch
too. Under mixed_bfloat16 the sequences are bf16 and the float32 variables are
read uncast: the op converts the kernels itself and hands back float32 weight
gradients, so the master weights and the saved model stay float32. Everything
else is Keras's: the weights (same variables, same layout, same names, so
weight files and backups are interchangeable with the plain layers),
statefulness, masks and ``go_backwards`` (Keras's loop).

    forward   x (batch, time, input), h0 [, c0] (batch, units) -> outputs (batch, time, units), hT [, cT]
    backward  d outputs, d hT [, d cT] -> d x, d h0 [, d c0], d kernel, d recurrent_kernel, d bias

The forward pass leaves a workspace (what the backward pass needs: every
gate of every step) with the layer's ``FusedKernel``, which its backward pass
reads; Keras trains one batch at a time, forward then backward, so each layer
has one workspace. The saved model stays a plain Keras model: training builds
a plain twin and copies the weights into it (training/callbacks.PlainModel).
"""

import threading

import keras
import numpy as np
import tensorflow as tf

from textgen.cells import CELLS_BY_KERAS_LAYER
from textgen.hardware.onednn import onednn_status
from textgen.hardware.onednn_rnn import RecurrentPrimitive, to_onednn_bias


def _to_keras_bias_gradient(kind, gradient):
    """oneDNN's bias gradient -> Keras's layout (the inverse of onednn_rnn.to_onednn_bias, for gradients)."""
    if kind.bias_rows == 1:
        return gradient
    units = gradient.shape[0] // 4
    update_reset, candidate, recurrent_candidate = (
        gradient[: 2 * units],
        gradient[2 * units : 3 * units],
        gradient[3 * units :],
    )
    return np.stack([np.concatenate([update_reset, candidate]), np.concatenate([update_reset, recurrent_candidate])])


# NumPy's name for each precision's sequence type (TensorFlow's bfloat16 is ml_dtypes' NumPy type).
SEQUENCE_TYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(tf.bfloat16.as_numpy_dtype)}


class FusedKernel:
    """One layer's oneDNN primitives (per input shape and precision) and the buffers its last forward pass left.

    Under mixed_bfloat16 the sequences and h states come and go in bfloat16; the
    kernels and bias always come in float32 (Keras's variables) and their
    gradients go back in float32; the conversions happen here, not in Keras.
    """

    def __init__(self, kind):
        self.kind = kind  # a cells.CellKind
        self.primitives = {}  # (batch, time, input_dim, units, precision) -> RecurrentPrimitive
        self.saved = None  # the last forward pass's (primitive, arrays, padded kernels), for its backward pass
        self.lock = threading.Lock()

    def _primitive(self, batch, time, input_dim, units, precision):
        key = (batch, time, input_dim, units, precision)
        if key not in self.primitives:
            onednn, _ = onednn_status()
            self.primitives[key] = RecurrentPrimitive(
                onednn, self.kind, batch=batch, time=time, input_dim=input_dim, units=units, precision=precision
            )
        return self.primitives[key]

    def forward(self, inputs, kernel, recurrent_kernel, bias, *initial_state):
        """(outputs, final states...) of the sequence, in the inputs' types; keeps what the backward pass needs."""
        batch, time, input_dim = inputs.shape
        units = recurrent_kernel.shape[0]
        precision = "bfloat16" if inputs.dtype == SEQUENCE_TYPES["bfloat16"] else "float32"
        sequence_type = SEQUENCE_TYPES[precision]
        with self.lock:
            primitive = self._primitive(batch, time, input_dim, units, precision)
            # Copies of the inputs: the backward pass reads them after this op has returned, when
            # TensorFlow may have reused the memory of the arrays it lent to this call.
            kernels = {"weights_layer": primitive.pad(kernel), "weights_iter": primitive.pad(recurrent_kernel)}
            arrays = {
                "src_layer": primitive.reorder_sequence("src_layer", inputs, sequence_type),
                "src_iter": np.array(initial_state[0], sequence_type),
                **primitive.forward_weights(kernels),
                "bias": np.array(to_onednn_bias(self.kind, bias), np.float32),
                "dst_layer": np.empty((time, batch, units), sequence_type),
                "dst_iter": np.empty((batch, units), sequence_type),
                "workspace": self._workspace(primitive.workspace_bytes),
            }
            if self.kind.has_cell_state:  # c stays float32 in both precisions
                arrays["src_iter_c"] = np.array(initial_state[1], np.float32)
                arrays["dst_iter_c"] = np.empty((batch, units), np.float32)
            primitive.forward(arrays)
            self.saved = (primitive, arrays, kernels, [state.dtype for state in initial_state])
        # Copies go to TensorFlow, which may reuse an output's memory; the backward pass reads these.
        states = [arrays["dst_iter"]] + ([arrays["dst_iter_c"]] if self.kind.has_cell_state else [])
        states = [np.array(state, initial.dtype) for state, initial in zip(states, initial_state)]
        return [primitive.reorder_sequence("dst_layer", arrays["dst_layer"], sequence_type), *states]  # batch first

    def _workspace(self, size):
        # Kept from one batch to the next: allocating ~100 MB per step cost a third of the step in page faults.
        if self.saved is None or self.saved[1]["workspace"].size != size:
            return np.empty(size, np.uint8)
        return self.saved[1]["workspace"]

    def backward(self, output_gradient, *state_gradients):
        """Gradients of the inputs, initial states, kernel, recurrent kernel and bias (Keras's layouts and types)."""
        with self.lock:
            primitive, forward, kernels, state_types = self.saved
            time, batch, input_dim = forward["src_layer"].shape
            units = forward["dst_iter"].shape[1]
            arrays = dict(forward)
            arrays.update(primitive.backward_weights(kernels))
            arrays.update(
                {  # every gradient is float32 in both precisions
                    "diff_dst_layer": primitive.reorder_sequence("diff_dst_layer", output_gradient, np.float32),
                    "diff_dst_iter": np.asarray(state_gradients[0], np.float32, order="C"),
                    "diff_src_layer": np.empty((time, batch, input_dim), np.float32),
                    "diff_src_iter": np.empty((batch, units), np.float32),
                    # oneDNN adds the weight gradients to what these hold.
                    "diff_weights_layer": np.zeros(kernels["weights_layer"].shape, np.float32),  # padded like them
                    "diff_weights_iter": np.zeros(kernels["weights_iter"].shape, np.float32),
                    "diff_bias": np.zeros(self.kind.onednn_bias_gates * units, np.float32),
                }
            )
            if self.kind.has_cell_state:
                arrays["diff_dst_iter_c"] = np.asarray(state_gradients[1], np.float32, order="C")
                arrays["diff_src_iter_c"] = np.empty((batch, units), np.float32)
            primitive.backward(arrays)
        state_gradients = [arrays["diff_src_iter"]] + ([arrays["diff_src_iter_c"]] if self.kind.has_cell_state else [])
        weight_gradients = [
            np.ascontiguousarray(arrays[name][:, : primitive.gate_columns])
            for name in ("diff_weights_layer", "diff_weights_iter")
        ]
        return [
            primitive.reorder_sequence("diff_src_layer", arrays["diff_src_layer"], forward["src_layer"].dtype),
            *weight_gradients,
            _to_keras_bias_gradient(self.kind, arrays["diff_bias"]),
            *[np.asarray(gradient, dtype) for gradient, dtype in zip(state_gradients, state_types)],
        ]


def fused_sequence(kernel_object, inputs, kernel, recurrent_kernel, bias, initial_state):
    """The fused forward pass as a TensorFlow op whose gradient is the fused backward pass.

    ``inputs`` and ``initial_state`` are float32 or bfloat16 (the layer's compute
    type); the kernels and bias float32. Each output and gradient has the type of
    what it stands for.
    """

    @tf.custom_gradient
    def run(inputs, kernel, recurrent_kernel, bias, *initial_state):
        arguments = [inputs, kernel, recurrent_kernel, bias, *initial_state]
        output_types = [inputs.dtype] + [state.dtype for state in initial_state]
        outputs = tf.numpy_function(kernel_object.forward, arguments, output_types, stateful=True)
        outputs[0].set_shape(inputs.shape[:2].concatenate(recurrent_kernel.shape[:1]))
        for state, initial in zip(outputs[1:], initial_state):
            state.set_shape(initial.shape)

        def gradient(*upstream):
            upstream = [tf.zeros_like(output) if grad is None else grad for grad, output in zip(upstream, outputs)]
            like = [inputs, kernel, recurrent_kernel, bias, *initial_state]
            grads = tf.numpy_function(
                kernel_object.backward, upstream, [tensor.dtype for tensor in like], stateful=True
            )
            for grad, tensor in zip(grads, like):
                grad.set_shape(tensor.shape)
            return grads

        return outputs, gradient

    return run(inputs, kernel, recurrent_kernel, bias, *initial_state)


def float32_variables():
    """A scope where Keras's variables read as they are stored, not cast to the layer's compute type.

    Keras 3.15 has no public way to read a float32 variable uncast inside a mixed-precision
    layer's call (``Layer.__call__`` enters an ``AutocastScope`` of the compute type); an
    ``AutocastScope(None)`` inside it turns the cast off, as Keras itself does for layers made
    with ``autocast=False``. tests/test_fused_rnn.py checks that the kernel reads float32.
    """
    from keras.src.backend import AutocastScope

    return AutocastScope(None)


class _Fused:
    """What the three layers share: inner_loop takes the fused path when it can."""

    def fused_kernel(self):
        if getattr(self, "_fused_kernel", None) is None:
            # The class is named as Keras's layer, so the registry knows its cell by that name.
            self._fused_kernel = FusedKernel(CELLS_BY_KERAS_LAYER[type(self).__name__])
        return self._fused_kernel

    def inner_loop(self, sequences, initial_state, mask, training=False):
        # Validation takes this path too (training=False): Keras's loop of small ops made the
        # held-out pass at each epoch's end ~10% of a tiny_shakespeare epoch (5.2 s for 16 batches).
        if mask is not None or sequences.dtype not in (tf.float32, tf.bfloat16) or self.go_backwards:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        states = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
        # Read the variables here, outside the custom gradient: their gradients flow through the reads.
        # In float32 even under mixed_bfloat16, where Keras would hand them out cast to bfloat16: the
        # kernel converts them itself and returns float32 gradients for the float32 variables.
        with float32_variables():
            weights = [
                tf.convert_to_tensor(variable)
                for variable in (self.cell.kernel, self.cell.recurrent_kernel, self.cell.bias)
            ]
        outputs, *final_states = fused_sequence(self.fused_kernel(), sequences, *weights, list(states))
        return outputs[:, -1], outputs, final_states


# Named as Keras's layers on purpose: Keras names a layer's weights after its class,
# so these layers' weight files (backups) are the plain layers' weight files.
class LSTM(_Fused, keras.layers.LSTM):
    """Keras's LSTM, trained through oneDNN's dnnl_lstm."""


class GRU(_Fused, keras.layers.GRU):
    """Keras's GRU, trained through oneDNN's dnnl_lbr_gru."""


class SimpleRNN(_Fused, keras.layers.SimpleRNN):
    """Keras's SimpleRNN, trained through oneDNN's dnnl_vanilla_rnn."""


# By the name users type (--cell lstm).
FUSED_LAYERS = {CELLS_BY_KERAS_LAYER[layer.__name__].name: layer for layer in (LSTM, GRU, SimpleRNN)}
