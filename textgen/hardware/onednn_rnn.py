"""oneDNN's fused recurrent primitives for the three cells textgen builds (cells.py names them).

    lstm        dnnl_lstm        gates i, f, c~, o: Keras's order and layout
    gru         dnnl_lbr_gru     "linear before reset": Keras's reset_after=True GRU
    simple_rnn  dnnl_vanilla_rnn with tanh

Arrays are NumPy arrays: sequences time-major (``tnc``: the backward pass
ran 20% faster than on batch-first ``ntc``), kernels in Keras's layout with
rows padded (``padded_row``). ``fused_rnn.py`` makes the two calls a
TensorFlow op with a gradient.

Two precisions (``PRECISIONS``):

    float32   every array float32; the kernels passed in Keras's own layout
    bfloat16  sequences and h states bfloat16; the bias, the LSTM's c state and
              every gradient float32 (what oneDNN's bf16 RNN takes). The kernels
              are reordered from Keras's float32 layout into the blocked bfloat16
              layout the primitive asks for (``format_tag_any``): given Keras's
              strided layout in bf16, oneDNN falls back to its slow reference code.
              oneDNN refuses to create it on a CPU without native bf16.
"""

import ctypes

import numpy as np

from textgen.cells import CELLS
from textgen.hardware.onednn import (
    ANY,
    ARGUMENTS,
    BF16,
    F32,
    QUERY_ARGUMENT,
    QUERY_SCRATCHPAD,
    QUERY_WORKSPACE,
    Reorder,
    padded_row,
)

# Values of oneDNN 3.2's enums (dnnl_types.h), as in hardware/onednn.py.
TNC, LDNC, LDGO = 4, 5, 5  # format tags: tnc = (time, batch, channels), ldnc = (layers, directions, batch, c)
_FORWARD_TRAINING, _BACKWARD, _LEFT_TO_RIGHT = 64, 128, 1
_ACTIVATIONS = {"tanh": 33}  # dnnl_eltwise_tanh, for vanilla_rnn
# Which arrays are bfloat16 in a bfloat16 primitive; all others (bias, c states, gradients) stay float32.
_BFLOAT16_ARRAYS = {"src_layer", "src_iter", "dst_layer", "dst_iter", "weights_layer", "weights_iter"}
PRECISIONS = {"float32": F32, "bfloat16": BF16}


class RecurrentPrimitive:
    """One layer's forward-training and backward primitives for fixed shapes and precision.

    Arrays, C-contiguous, in oneDNN's names (bfloat16 where ``precision`` is
    and the module's docstring says so, else float32):
        src_layer (time, batch, input)     dst_layer (time, batch, units)
        src_iter, src_iter_c, dst_iter, dst_iter_c (batch, units): initial and final h (and c, LSTM)
        weights_layer, weights_iter: from ``forward_weights`` / ``backward_weights``
        bias (bias_gates * units,)
    The kernels come in as ``pad``-ded float32 copies of Keras's kernels,
    (input, gates * units) and (units, gates * units).
    """

    KERNELS = ("weights_layer", "weights_iter")

    def __init__(self, onednn, kind, *, batch, time, input_dim, units, precision="float32"):
        self.onednn, self.kind, self.precision = onednn, kind, precision  # kind: a cells.CellKind
        self.gate_columns = kind.gates * units
        blocked = precision != "float32"  # the kernels in the layout the primitive picks
        data_type = PRECISIONS[precision]
        self.descriptors = self._describe(batch, time, input_dim, units, data_type, blocked=blocked)
        self.forward_descriptor = self._create(_FORWARD_TRAINING)
        self.backward_descriptor = self._create(_BACKWARD, hint=self.forward_descriptor)
        self.forward_primitive = onednn.primitive(self.forward_descriptor)
        self.backward_primitive = onednn.primitive(self.backward_descriptor)
        self.implementation = onednn.implementation(self.forward_descriptor)
        chosen = self._bind_memories()
        self._sequence_reorders(batch, time, input_dim, units, data_type)
        # bfloat16: Keras's float32 kernels (padded rows) -> the blocked bfloat16 layout of each pass.
        keras_layout = {name: self.descriptors[f"diff_{name}"] for name in self.KERNELS}  # float32, Keras's strides
        self.reorders = (
            {
                prefix + name: Reorder(onednn, keras_layout[name], chosen[prefix + name])
                for prefix in ("", "backward_")
                for name in self.KERNELS
            }
            if blocked
            else {}
        )

    def _describe(self, batch, time, input_dim, units, data_type, *, blocked):
        """Every argument's memory descriptor, by name (``backward_``: the kernels as the backward pass reads them)."""
        gates, bias_gates = self.kind.gates, self.kind.onednn_bias_gates
        shapes = {
            "src_layer": ((time, batch, input_dim), TNC),
            "dst_layer": ((time, batch, units), TNC),
            "src_iter": ((1, 1, batch, units), LDNC),
            "dst_iter": ((1, 1, batch, units), LDNC),
            "weights_layer": ((1, 1, input_dim, gates, units), self._ldigo(input_dim, gates, units)),
            "weights_iter": ((1, 1, units, gates, units), self._ldigo(units, gates, units)),
            "bias": ((1, 1, bias_gates, units), LDGO),
        }
        if self.kind.has_cell_state:
            shapes["src_iter_c"], shapes["dst_iter_c"] = shapes["src_iter"], shapes["dst_iter"]
        # Every gradient float32, in the layout of what it is the gradient of (the kernels: Keras's).
        gradients = {f"diff_{name}": shape for name, shape in shapes.items()}
        # The float32 backward pass reads the kernels transposed, (gates * units, input): Keras's kernel.T.
        transposed = {
            "weights_layer": self._ldgoi(input_dim, gates, units),
            "weights_iter": self._ldgoi(units, gates, units),
        }
        for name in self.KERNELS:
            dims = shapes[name][0]
            shapes[f"backward_{name}"] = (dims, ANY if blocked else transposed[name])
            if blocked:
                shapes[name] = (dims, ANY)

        def data_type_of(name):
            return data_type if name.removeprefix("backward_") in _BFLOAT16_ARRAYS else F32

        descriptors = {
            name: self.onednn.memory_desc(dims, layout, data_type_of(name)) for name, (dims, layout) in shapes.items()
        }
        descriptors.update({name: self.onednn.memory_desc(dims, layout) for name, (dims, layout) in gradients.items()})
        return descriptors

    def _bind_memories(self):
        """One memory object per argument and pass, each with the descriptor its primitive expects.

        Returns the kernels' descriptors as the primitives chose them (with format_tag_any
        they are only known once the primitives exist), by name (``backward_``: the backward pass's).
        """
        onednn = self.onednn
        workspace = onednn.query_descriptor(self.forward_descriptor, QUERY_WORKSPACE)
        scratchpads = [
            onednn.query_descriptor(pd, QUERY_SCRATCHPAD) for pd in (self.forward_descriptor, self.backward_descriptor)
        ]
        self.workspace_bytes = onednn.size(workspace)
        self.scratchpad = np.empty(max([onednn.size(scratchpad) for scratchpad in scratchpads] + [1]), np.uint8)
        chosen = {}
        for prefix, descriptor in (("", self.forward_descriptor), ("backward_", self.backward_descriptor)):
            for name in self.KERNELS:
                chosen[prefix + name] = onednn.query_descriptor(descriptor, QUERY_ARGUMENT, ARGUMENTS[name])
        self.forward_memories = {
            name: onednn.memory(descriptor)
            for name, descriptor in self.descriptors.items()
            if not name.startswith("backward_") and name not in self.KERNELS
        }
        self.forward_memories["workspace"] = onednn.memory(workspace)
        self.backward_memories = dict(self.forward_memories)
        for name in self.KERNELS:
            self.forward_memories[name] = onednn.memory(chosen[name])
            self.backward_memories[name] = onednn.memory(chosen[f"backward_{name}"])
        self.forward_memories["scratchpad"] = onednn.memory(scratchpads[0])
        self.backward_memories["scratchpad"] = onednn.memory(scratchpads[1])
        return chosen

    def _sequence_reorders(self, batch, time, input_dim, units, data_type):
        """Keras's batch-first sequences <-> the primitive's time-major ones, converted where the types differ.

        oneDNN's reorders run on every core, vectorized: a (64, 100, 256) sequence transposed
        and converted from bfloat16 to float32 in 0.13 ms, where NumPy took 1.0 ms (2.4 ms
        from float32 to bfloat16, bit for bit the same rounding).
        """
        onednn, descriptors = self.onednn, self.descriptors

        def batch_first(channels):  # logical (time, batch, channels), stored (batch, time, channels)
            return onednn.memory_desc((time, batch, channels), (channels, time * channels, 1), data_type)

        self.sequence_reorders = {
            "src_layer": Reorder(onednn, batch_first(input_dim), descriptors["src_layer"]),
            "dst_layer": Reorder(onednn, descriptors["dst_layer"], batch_first(units)),
            "diff_dst_layer": Reorder(onednn, batch_first(units), descriptors["diff_dst_layer"]),  # to float32
            "diff_src_layer": Reorder(onednn, descriptors["diff_src_layer"], batch_first(input_dim)),
        }

    def reorder_sequence(self, name, array, dtype):
        """``array`` (batch, time, channels) <-> (time, batch, channels) through ``name``'s reorder, as ``dtype``."""
        destination = np.empty((array.shape[1], array.shape[0], array.shape[2]), dtype)
        self.sequence_reorders[name](array, destination)
        return destination

    @staticmethod
    def _ldigo(inputs, gates, units):
        """Strides of a kernel (1, 1, inputs, gates, units) stored as Keras's (inputs, gates * units), rows padded."""
        row = padded_row(gates * units)
        return (inputs * row, inputs * row, row, units, 1)

    @staticmethod
    def _ldgoi(inputs, gates, units):
        """Strides of the same kernel stored transposed, (gates * units, inputs), rows padded."""
        row = padded_row(inputs)
        return (gates * units * row, gates * units * row, 1, units * row, row)

    @staticmethod
    def pad(matrix):
        """``matrix`` (rows, columns) copied into rows of padded_row(columns) floats."""
        padded = np.zeros((matrix.shape[0], padded_row(matrix.shape[1])), np.float32)
        padded[:, : matrix.shape[1]] = matrix
        return padded

    def forward_weights(self, kernels):
        """{weights_layer, weights_iter} as the forward primitive reads them, from the padded Keras kernels."""
        if not self.reorders:
            return dict(kernels)
        return {name: self.reorders[name](kernel) for name, kernel in kernels.items()}

    def backward_weights(self, kernels):
        """The same kernels as the backward primitive reads them (float32: transposed)."""
        if not self.reorders:
            return {name: self.pad(kernel[:, : self.gate_columns].T) for name, kernel in kernels.items()}
        return {name: self.reorders[f"backward_{name}"](kernel) for name, kernel in kernels.items()}

    def _create(self, prop_kind, hint=None):
        """A primitive descriptor for ``prop_kind`` (the backward pass: the kernels as it reads them)."""
        arguments = dict(self.descriptors)  # every argument's, and its gradient's (diff_)
        if prop_kind == _BACKWARD:
            arguments.update({name: self.descriptors[f"backward_{name}"] for name in self.KERNELS})
        return create_descriptor(self.onednn, self.kind, arguments, prop_kind, hint=hint, what=self.precision)

    def forward(self, arrays):
        """The forward pass: ``arrays`` holds the inputs, the outputs and a workspace of workspace_bytes."""
        self.onednn.execute(self.forward_primitive, self.forward_memories, {**arrays, "scratchpad": self.scratchpad})

    def backward(self, arrays):
        """The backward pass: the forward's arrays (backward_weights' kernels), diff_dst_* and zeroed diff weights."""
        self.onednn.execute(self.backward_primitive, self.backward_memories, {**arrays, "scratchpad": self.scratchpad})


def argument_names(kind):
    """The arguments of dnnl_{algorithm}_forward_primitive_desc_create in the C API's order (None: an
    unused one, the LSTM's peephole and projection weights)."""
    c = kind.has_cell_state  # the LSTM's c state
    names = ["src_layer", "src_iter", *(["src_iter_c"] if c else []), "weights_layer", "weights_iter"]
    return names + [*([None, None] if c else []), "bias", "dst_layer", "dst_iter", *(["dst_iter_c"] if c else [])]


def create_descriptor(onednn, kind, descriptors, prop_kind, *, hint=None, what=""):
    """A primitive descriptor: dnnl_{algorithm}_{forward|backward}_primitive_desc_create on ``descriptors``
    (memory descriptors by argument name; a backward pass's also hold each argument's ``diff_`` one)."""
    names = argument_names(kind)
    backward = prop_kind == _BACKWARD
    arguments = [descriptors[name] if name else None for name in names]
    if backward:  # then each argument's gradient, in the same order
        arguments += [descriptors[f"diff_{name}"] if name else None for name in names]
    descriptor = ctypes.c_void_p()
    head = [ctypes.byref(descriptor), onednn.engine, prop_kind]
    tail = [0]  # flags
    if kind.onednn_activation:  # vanilla_rnn: its activation, and the activation's alpha and beta
        head.append(_ACTIVATIONS[kind.onednn_activation])
        tail += [ctypes.c_float(0.0), ctypes.c_float(0.0)]
    tail += [hint] if hint else []
    direction = "backward" if backward else "forward"
    function = getattr(onednn.library, f"dnnl_{kind.onednn_algorithm}_{direction}_primitive_desc_create")
    status = function(*head, _LEFT_TO_RIGHT, *arguments, *tail, onednn.attributes)
    onednn.check(status, f"{what} {kind.onednn_algorithm} primitive_desc_create".strip())
    return descriptor


def to_onednn_bias(kind, bias):
    """Keras's bias -> oneDNN's: GRU (2, 3 units) rows for x W and h U -> u, r, c~ of x W + the h U of c~."""
    if kind.bias_rows == 1:
        return np.ascontiguousarray(bias)
    input_bias, recurrent_bias = np.split(bias, 2, axis=0)  # each (1, 3 * units): z, r, h parts
    units = bias.shape[1] // 3
    summed = input_bias[0, : 2 * units] + recurrent_bias[0, : 2 * units]  # z and r just add up
    return np.ascontiguousarray(np.concatenate([summed, input_bias[0, 2 * units :], recurrent_bias[0, 2 * units :]]))


def bfloat16_refusal(onednn):
    """None where oneDNN makes a bfloat16 RNN primitive on this CPU, else oneDNN's refusal as a phrase."""
    try:
        RecurrentPrimitive(onednn, CELLS["lstm"], batch=2, time=2, input_dim=16, units=16, precision="bfloat16")
    except RuntimeError as error:  # status 3, unimplemented: no bfloat16 on this CPU (AVX2 only)
        return f"oneDNN has no bfloat16 RNN for this CPU ({error}); it needs AVX-512 BF16 or AMX"
    return None
