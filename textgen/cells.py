"""The three recurrent cells: their names everywhere, and their equations in NumPy.

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

(The NumPy cells store their sigmoid gates' columns of W, U and b halved, which makes a sigmoid one
tanh: see sigmoid_of_halves_.)

``CELLS`` is the one registry of cells: the name a user types (``--cell lstm``)
-> the Keras layer and cell classes (by name, so this module needs no Keras),
how many state arrays the cell carries, how many gates its weights hold, the
NumPy cell above, and the oneDNN primitive that trains it on a CPU. The model
builder, the archive reader, both engines and the fused kernel read it.
"""

import dataclasses

import numpy as np

from textgen.errors import TextgenError


def sigmoid_of_halves_(x):
    """sigmoid(z) in place, from x = z / 2: (tanh(z / 2) + 1) / 2 = 1 / (1 + exp(-z)), which cannot overflow.

    The cells keep their sigmoid gates' columns of W, U and b halved (``halve_columns``), so their
    pre-activations arrive as z / 2 and the sigmoid needs no pass of its own to halve them: an LSTM
    layer's sigmoid and tanh gates become one tanh over the whole (batch, 4 units) block (on an AMD
    EPYC Zen 4 a batch-64 layer's activations 125 -> 86 us, a single stream's step 65 -> 58-62 us:
    benchmarks/RESULTS.md). Halving is exact in binary floating point (short of subnormal numbers),
    so x W/2 + h U/2 + b/2 is exactly (x W + h U + b) / 2: the same numbers as halving the sum."""
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def halve_columns(array, columns):
    """A copy of ``array`` with its first ``columns`` (on the last axis) halved: a sigmoid gate's weights."""
    if not columns:
        return array
    halved = np.array(array)  # a copy, in the archive's dtype
    halved[..., :columns] *= 0.5
    return halved


class NumpyActivations:
    """The cells' nonlinearities in NumPy. The NumPy engine may swap in another object with the same
    three methods and the same numbers (hardware/onednn_activations.py: faster on some CPUs)."""

    @staticmethod
    def sigmoid_of_halves_(x):
        return sigmoid_of_halves_(x)

    @staticmethod
    def tanh(x):
        return np.tanh(x)

    @staticmethod
    def gates_(gates, sigmoid_columns):
        """In place: sigmoid on the first ``sigmoid_columns`` columns of (batch, columns), which hold
        halves (see sigmoid_of_halves_), tanh on the rest: one tanh over the whole block."""
        np.tanh(gates, out=gates)
        sigmoids = gates[:, :sigmoid_columns]
        sigmoids *= 0.5
        sigmoids += 0.5
        return gates


NUMPY_ACTIVATIONS = NumpyActivations()


# From this batch size on, the transposed product is faster (see matmul).
_TRANSPOSED_FROM_BATCH = 8


def matmul(inputs, kernel, kernel_transposed):
    """inputs @ kernel for inputs (batch, in); kernel_transposed is the same matrix stored (out, in).

    For batches of 8 and more it computes (kernel^T @ inputs^T)^T, the same
    numbers, which OpenBLAS runs 15-25% faster at the sizes sampling uses; for
    a single stream the plain product is a little faster.
    """
    if inputs.shape[0] < _TRANSPOSED_FROM_BATCH:
        return inputs @ kernel
    return (kernel_transposed @ inputs.T).T


class NumpyProducts:
    """The cells' matrix products in NumPy. The NumPy engine may swap in another object with the same
    two methods and the same numbers (hardware/onednn_products.py: faster on some CPUs)."""

    @staticmethod
    def multiply_add_(inputs, kernel, kernel_transposed, out):
        """out += inputs @ kernel, in place (``out`` is the caller's own array); returns out."""
        out += matmul(inputs, kernel, kernel_transposed)
        return out

    @staticmethod
    def project(inputs, kernel, kernel_transposed, bias):
        """inputs @ kernel + bias, a new array: (batch, in) or (batch, time, in) -> (..., columns)."""
        if inputs.ndim == 2:
            return matmul(inputs, kernel, kernel_transposed) + bias
        return inputs @ kernel + bias


NUMPY_PRODUCTS = NumpyProducts()


class Cell:
    """What every cell shares: the weights in Keras's layout, and the input projection."""

    activations = NUMPY_ACTIVATIONS  # sigmoid and tanh (an engine may set a faster one per cell)
    products = NUMPY_PRODUCTS  # the batch's matrix products (likewise)
    sigmoid_gates = 0  # blocks of `units` columns, first in W, U and b, that go through a sigmoid

    def __init__(self, kernel, recurrent_kernel, bias):
        self.units = recurrent_kernel.shape[0]
        # The sigmoid gates' columns halved: their pre-activations arrive as z / 2 (sigmoid_of_halves_).
        kernel, recurrent_kernel, bias = (
            halve_columns(array, self.sigmoid_gates * self.units) for array in (kernel, recurrent_kernel, bias)
        )
        self.kernel, self.bias = kernel, bias  # (input_dim, gates * units), (gates * units,)
        self.recurrent_kernel = recurrent_kernel  # (units, gates * units)
        self.kernel_transposed = np.ascontiguousarray(kernel.T)  # both layouts: see matmul
        self.recurrent_kernel_transposed = np.ascontiguousarray(recurrent_kernel.T)
        self.stacked_kernel = np.concatenate([kernel, recurrent_kernel])  # [W; U]: (input_dim + units, gates * units)

    def zero_state(self, batch_size):
        return (np.zeros((batch_size, self.units), np.float32),)

    def project_inputs(self, inputs):
        """x W + b for every time step at once (batch, time, input_dim) or one step (batch, input_dim)."""
        return self.products.project(inputs, self.kernel, self.kernel_transposed, self.bias)

    def recurrent_part(self, h):
        return matmul(h, self.recurrent_kernel, self.recurrent_kernel_transposed)  # h U: (batch, gates * units)

    def add_recurrent_part_(self, h, out):
        """out += h U in place: ``out`` (batch, gates * units) is the caller's own array."""
        return self.products.multiply_add_(h, self.recurrent_kernel, self.recurrent_kernel_transposed, out)

    def recur(self, projected, state):
        """The next output and state, given x W + b (an array the caller hands over: it becomes the
        gates): adds h U in place, then applies the cell's gates."""
        return self.activate(self.add_recurrent_part_(state[0], projected), state)

    def step(self, inputs, state):
        """One time step from the layer's input x (batch, input_dim)."""
        if inputs.shape[0] < _TRANSPOSED_FROM_BATCH and self.stacked_kernel is not None:
            # A single stream is limited by reading the weights from memory: one
            # product of [x, h] with [W; U] reads them in one pass instead of two.
            joined = np.concatenate([inputs, state[0]], axis=1)  # (batch, input_dim + units)
            return self.activate(self.products.project(joined, self.stacked_kernel, None, self.bias), state)
        return self.recur(self.project_inputs(inputs), state)


class SimpleRNNCell(Cell):
    def activate(self, pre_activation, state):
        h = self.activations.tanh(pre_activation)  # tanh(x W + h U + b): (batch, units)
        return h, (h,)


def _lstm_gates_to_ifog(array):
    """Keras orders LSTM gate columns i, f, g, o; store them i, f, o, g so one sigmoid covers i, f, o."""
    i, f, g, o = np.split(array, 4, axis=-1)
    return np.ascontiguousarray(np.concatenate([i, f, o, g], axis=-1))


class LSTMCell(Cell):
    sigmoid_gates = 3  # i, f, o (stored first: _lstm_gates_to_ifog)

    def __init__(self, kernel, recurrent_kernel, bias):
        super().__init__(*(_lstm_gates_to_ifog(array) for array in (kernel, recurrent_kernel, bias)))

    def zero_state(self, batch_size):
        zeros = np.zeros((batch_size, self.units), np.float32)
        return (zeros, zeros.copy())  # (h, c)

    def activate(self, gates, state):
        _, c = state
        u = self.units  # gates = x W + h U + b: (batch, 4 * units), columns i, f, o, g
        self.activations.gates_(gates, 3 * u)  # sigmoid on i, f, o; tanh on g
        i, f, o = gates[:, :u], gates[:, u : 2 * u], gates[:, 2 * u : 3 * u]  # input, forget, output gates
        g = gates[:, 3 * u :]  # the candidate cell values
        c = f * c + i * g
        h = o * self.activations.tanh(c)
        return h, (h, c)


class GRUCell(Cell):
    sigmoid_gates = 2  # z, r

    def __init__(self, kernel, recurrent_kernel, bias):
        if bias.ndim != 2:
            raise TextgenError("only GRU layers with reset_after=True (Keras's default) are supported")
        super().__init__(kernel, recurrent_kernel, bias[0])  # bias[0] is added to x W
        # added to h U, inside the reset gate's reach (its z and r columns halved, as W's and U's are)
        self.recurrent_bias = halve_columns(bias[1], self.sigmoid_gates * self.units)
        self.stacked_kernel = None  # x W and h U stay apart: the reset gate scales h U alone

    def recur(self, projected, state):
        (h,) = state
        u = self.units
        inner = np.empty_like(projected)  # h U + b[1]: (batch, 3 * units), z, r, h parts
        inner[...] = self.recurrent_bias
        self.add_recurrent_part_(h, inner)
        zr = self.activations.sigmoid_of_halves_(projected[:, : 2 * u] + inner[:, : 2 * u])
        z, r = zr[:, :u], zr[:, u:]  # update gate (how much old state to keep), reset gate
        candidate = self.activations.tanh(projected[:, 2 * u :] + r * inner[:, 2 * u :])
        h = z * h + (1.0 - z) * candidate
        return h, (h,)


@dataclasses.dataclass(frozen=True)
class CellKind:
    """One recurrent cell as every part of textgen names and uses it."""

    name: str  # what users type: --cell lstm
    keras_layer: str  # the keras.layers class, and its class_name inside model.keras
    keras_cell: str  # the keras.layers cell class the Keras engine steps with
    states: int  # state arrays carried from step to step: (h,) or (h, c)
    gates: int  # blocks of `units` columns in each weight matrix
    numpy_cell: type  # the equations above
    bias_rows: int  # GRU (reset_after=True) keeps one bias row for x W and one for h U
    # oneDNN's fused RNN primitive for this cell (hardware/onednn_rnn.py):
    onednn_algorithm: str  # dnnl_{algorithm}_forward_primitive_desc_create
    onednn_bias_gates: int  # blocks of `units` in its bias: lbr_gru has one more, the h U bias of c~
    onednn_activation: str = None  # what vanilla_rnn must be told; the gated cells' are fixed

    @property
    def has_cell_state(self):
        """The LSTM's c: a second state, kept float32 in every precision, and its gradient."""
        return self.states == 2


CELLS = {
    kind.name: kind
    for kind in (
        CellKind(
            "simple_rnn",
            "SimpleRNN",
            "SimpleRNNCell",
            states=1,
            gates=1,
            numpy_cell=SimpleRNNCell,
            bias_rows=1,
            onednn_algorithm="vanilla_rnn",
            onednn_bias_gates=1,
            onednn_activation="tanh",
        ),
        CellKind(
            "lstm",
            "LSTM",
            "LSTMCell",
            states=2,
            gates=4,
            numpy_cell=LSTMCell,
            bias_rows=1,
            onednn_algorithm="lstm",
            onednn_bias_gates=4,
        ),
        CellKind(
            "gru",
            "GRU",
            "GRUCell",
            states=1,
            gates=3,
            numpy_cell=GRUCell,
            bias_rows=2,
            onednn_algorithm="lbr_gru",
            onednn_bias_gates=4,
        ),
    )
}
# The same cells by the class name a model.keras archive records.
CELLS_BY_KERAS_LAYER = {kind.keras_layer: kind for kind in CELLS.values()}
