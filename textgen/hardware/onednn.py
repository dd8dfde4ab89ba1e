"""oneDNN's fused recurrent primitives, called through its C API with ctypes.

PyTorch trains an LSTM on a CPU with one call per layer to oneDNN's RNN
primitive: the whole sequence, every time step's gate math fused into JIT-
compiled kernels, and a workspace that keeps what the backward pass needs.
TensorFlow exposes no such kernel, so Keras runs a loop of small ops per time
step. This module calls the same primitive from the ``onednn-cpu-gomp``
package (oneDNN 3.2's ``libdnnl.so``), for the three cells textgen builds:

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
import sys
from pathlib import Path

import numpy as np

# Values of oneDNN 3.2's enums and #defines (dnnl_types.h), printed by a C probe compiled
# against the onednn-devel-cpu-gomp headers.
_F32, _BF16, _CPU, _IN_ORDER = 3, 2, 1, 1
_ANY, _TNC, _LDNC, _LDGO = 1, 4, 5, 5  # format tags: any = the primitive's choice; tnc = (time, batch, channels)
_FORWARD_TRAINING, _BACKWARD, _LEFT_TO_RIGHT, _TANH = 64, 128, 1, 33
_QUERY_IMPLEMENTATION, _QUERY_WORKSPACE, _QUERY_SCRATCHPAD, _QUERY_ARGUMENT = 8, 135, 136, 255
# The scratchpad (temporary memory) is ours, passed in with each call: oneDNN's default keeps
# it per thread, sized when the primitive is made, and TensorFlow may run the backward pass on
# another thread than the one that made it (that crashed).
_SCRATCHPAD_MODE_USER = 1
_ARGUMENTS = {
    "src_layer": 1,
    "src_iter": 2,
    "src_iter_c": 3,
    "dst_layer": 17,
    "dst_iter": 18,
    "dst_iter_c": 19,
    "weights_layer": 33,
    "weights_iter": 34,
    "bias": 41,
    "workspace": 64,
    "diff_src_layer": 129,
    "diff_src_iter": 130,
    "diff_src_iter_c": 131,
    "diff_dst_layer": 145,
    "diff_dst_iter": 146,
    "diff_dst_iter_c": 147,
    "diff_weights_layer": 161,
    "diff_weights_iter": 162,
    "diff_bias": 169,
    "scratchpad": 80,
    "src": 1,
    "dst": 17,
}
# Which arrays are bfloat16 in a bfloat16 primitive; all others (bias, c states, gradients) stay float32.
_BFLOAT16_ARRAYS = {"src_layer", "src_iter", "dst_layer", "dst_iter", "weights_layer", "weights_iter"}
PRECISIONS = {"float32": _F32, "bfloat16": _BF16}
# Gate blocks in each cell's weights, and in its oneDNN bias (lbr_gru has one more: the h U bias of c~).
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
BIAS_GATES = {"lstm": 4, "gru": 4, "simple_rnn": 1}


class _ExecArgument(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


def _library_paths():
    """Where pip puts libdnnl.so.3: the environment's lib/ (the wheel installs it there)."""
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix]):
        yield Path(prefix) / "lib" / "libdnnl.so.3"


def load_library():
    """The oneDNN library, or None with the reason (another OS, the package missing, an unloadable file)."""
    if not sys.platform.startswith("linux"):
        return None, f"oneDNN's CPU package is built for Linux, not {sys.platform}"
    for path in _library_paths():
        if path.is_file():
            try:
                return ctypes.CDLL(str(path)), None
            except OSError as error:
                return None, f"cannot load {path}: {error}"
    return None, "the onednn-cpu-gomp package is not installed"


class OneDNN:
    """The engine, stream and the calls textgen needs, checked: every call's status must be success."""

    def __init__(self, library):
        self.library = library
        # Two calls return a pointer or a size, not a status: ctypes must know, or it truncates them to int.
        library.dnnl_primitive_desc_query_md.restype = ctypes.c_void_p
        library.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        self.engine, self.stream, self.attributes = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        self.check(library.dnnl_primitive_attr_create(ctypes.byref(self.attributes)), "primitive_attr_create")
        mode = library.dnnl_primitive_attr_set_scratchpad_mode(self.attributes, _SCRATCHPAD_MODE_USER)
        self.check(mode, "set_scratchpad_mode")
        self.check(library.dnnl_engine_create(ctypes.byref(self.engine), _CPU, 0), "engine_create")
        self.check(library.dnnl_stream_create(ctypes.byref(self.stream), self.engine, _IN_ORDER), "stream_create")

    @staticmethod
    def check(status, what):
        if status != 0:
            raise RuntimeError(f"oneDNN {what} failed with status {status}")

    def memory_desc(self, dims, layout, data_type=_F32):
        """A memory descriptor: ``layout`` is a format tag, or the strides of each dimension."""
        descriptor = ctypes.c_void_p()
        shape = (ctypes.c_int64 * len(dims))(*dims)
        if isinstance(layout, tuple):
            strides = (ctypes.c_int64 * len(dims))(*layout)
            create, how = self.library.dnnl_memory_desc_create_with_strides, strides
        else:
            create, how = self.library.dnnl_memory_desc_create_with_tag, layout
        self.check(create(ctypes.byref(descriptor), len(dims), shape, data_type, how), "memory_desc_create")
        return descriptor

    def query_descriptor(self, primitive_descriptor, what, index=0):
        """A memory descriptor a primitive descriptor chose (owned by it: valid while it lives)."""
        return ctypes.c_void_p(self.library.dnnl_primitive_desc_query_md(primitive_descriptor, what, index))

    def size(self, descriptor):
        return self.library.dnnl_memory_desc_get_size(descriptor)

    def implementation(self, primitive_descriptor):
        """oneDNN's name for the code a primitive runs, e.g. 'brgemm:avx512_core_bf16' or 'ref'."""
        name = ctypes.c_char_p()
        self.check(
            self.library.dnnl_primitive_desc_query(primitive_descriptor, _QUERY_IMPLEMENTATION, 0, ctypes.byref(name)),
            "primitive_desc_query",
        )
        return name.value.decode()

    def memory(self, descriptor):
        memory = ctypes.c_void_p()
        self.check(
            self.library.dnnl_memory_create(ctypes.byref(memory), descriptor, self.engine, None), "memory_create"
        )
        return memory

    def primitive(self, descriptor):
        primitive = ctypes.c_void_p()
        self.check(self.library.dnnl_primitive_create(ctypes.byref(primitive), descriptor), "primitive_create")
        return primitive

    def execute(self, primitive, memories, arrays):
        """Run ``primitive`` on NumPy arrays: {argument name: array}, each bound to its memory object."""
        arguments = (_ExecArgument * len(arrays))()
        for index, (name, array) in enumerate(arrays.items()):
            assert array.flags.c_contiguous, name
            self.check(
                self.library.dnnl_memory_set_data_handle(memories[name], array.ctypes.data_as(ctypes.c_void_p)),
                "memory_set_data_handle",
            )
            arguments[index] = _ExecArgument(_ARGUMENTS[name], memories[name])
        self.check(self.library.dnnl_primitive_execute(primitive, self.stream, len(arrays), arguments), "execute")
        self.check(self.library.dnnl_stream_wait(self.stream), "stream_wait")


def padded_row(length):
    """A row length for weight matrices that avoids 4K aliasing, as oneDNN picks it for itself.

    Rows of 1,024 floats start every 4 KB, so the same cache sets serve every row and
    evict each other; 16 floats more per row (oneDNN's own rule: lengths that are
    multiples of 256 get 16 more) made PyTorch's identical LSTM primitive ~12% faster.
    """
    row = -(-length // 16) * 16
    return row + 16 if row % 256 == 0 else row


def aligned_empty(size):
    """``size`` bytes starting on a 64-byte boundary: oneDNN reads its blocked layouts with aligned loads."""
    buffer = np.empty(size + 64, np.uint8)
    offset = -buffer.ctypes.data % 64
    return buffer[offset : offset + size]


class Reorder:
    """A copy from one memory descriptor to another: another layout, another data type, or both."""

    def __init__(self, onednn, source, destination):
        self.onednn = onednn
        self.descriptor = ctypes.c_void_p()  # kept: the descriptors it hands out live as long as it
        create = onednn.library.dnnl_reorder_primitive_desc_create
        onednn.check(
            create(ctypes.byref(self.descriptor), source, onednn.engine, destination, onednn.engine, onednn.attributes),
            "reorder_primitive_desc_create",
        )
        self.primitive = onednn.primitive(self.descriptor)
        scratchpad = onednn.query_descriptor(self.descriptor, _QUERY_SCRATCHPAD)
        self.scratchpad = np.empty(max(onednn.size(scratchpad), 1), np.uint8)
        self.memories = {
            "src": onednn.memory(source),
            "dst": onednn.memory(destination),
            "scratchpad": onednn.memory(scratchpad),
        }
        self.destination_bytes = onednn.size(destination)

    def __call__(self, source, destination=None):
        """``source`` copied into ``destination`` (default: a new aligned buffer), which is returned."""
        if destination is None:
            destination = aligned_empty(self.destination_bytes)
        assert destination.nbytes == self.destination_bytes
        arrays = {"src": np.ascontiguousarray(source), "dst": destination, "scratchpad": self.scratchpad}
        self.onednn.execute(self.primitive, self.memories, arrays)
        return destination


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

    def __init__(self, onednn, cell, *, batch, time, input_dim, units, precision="float32"):
        self.onednn, self.cell, self.precision = onednn, cell, precision
        self.gate_columns = GATES[cell] * units
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
        gates, bias_gates = GATES[self.cell], BIAS_GATES[self.cell]
        shapes = {
            "src_layer": ((time, batch, input_dim), _TNC),
            "dst_layer": ((time, batch, units), _TNC),
            "src_iter": ((1, 1, batch, units), _LDNC),
            "dst_iter": ((1, 1, batch, units), _LDNC),
            "weights_layer": ((1, 1, input_dim, gates, units), self._ldigo(input_dim, gates, units)),
            "weights_iter": ((1, 1, units, gates, units), self._ldigo(units, gates, units)),
            "bias": ((1, 1, bias_gates, units), _LDGO),
        }
        if self.cell == "lstm":
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
            shapes[f"backward_{name}"] = (dims, _ANY if blocked else transposed[name])
            if blocked:
                shapes[name] = (dims, _ANY)

        def data_type_of(name):
            return data_type if name.removeprefix("backward_") in _BFLOAT16_ARRAYS else _F32

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
        workspace = onednn.query_descriptor(self.forward_descriptor, _QUERY_WORKSPACE)
        scratchpads = [
            onednn.query_descriptor(pd, _QUERY_SCRATCHPAD) for pd in (self.forward_descriptor, self.backward_descriptor)
        ]
        self.workspace_bytes = onednn.size(workspace)
        self.scratchpad = np.empty(max([onednn.size(scratchpad) for scratchpad in scratchpads] + [1]), np.uint8)
        chosen = {}
        for prefix, descriptor in (("", self.forward_descriptor), ("backward_", self.backward_descriptor)):
            for name in self.KERNELS:
                chosen[prefix + name] = onednn.query_descriptor(descriptor, _QUERY_ARGUMENT, _ARGUMENTS[name])
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
        library, d, none = self.onednn.library, self.descriptors, None
        descriptor = ctypes.c_void_p()
        forward = [d["src_layer"], d["src_iter"]] + ([d["src_iter_c"]] if self.cell == "lstm" else [])
        prefix = "backward_" if prop_kind == _BACKWARD else ""
        weights = [d[f"{prefix}weights_layer"], d[f"{prefix}weights_iter"]]
        weights += [none, none] if self.cell == "lstm" else []  # no peephole, no projection
        outputs = [d["dst_layer"], d["dst_iter"]] + ([d["dst_iter_c"]] if self.cell == "lstm" else [])
        arguments = forward + weights + [d["bias"]] + outputs
        if prop_kind == _BACKWARD:
            diff = [d[f"diff_{name}"] for name in ("src_layer", "src_iter")]
            diff += [d["diff_src_iter_c"]] if self.cell == "lstm" else []
            diff += [d["diff_weights_layer"], d["diff_weights_iter"]] + ([none, none] if self.cell == "lstm" else [])
            diff += [d["diff_bias"], d["diff_dst_layer"], d["diff_dst_iter"]]
            diff += [d["diff_dst_iter_c"]] if self.cell == "lstm" else []
            arguments += diff
        name = {"lstm": "lstm", "gru": "lbr_gru", "simple_rnn": "vanilla_rnn"}[self.cell]
        function = getattr(library, f"dnnl_{name}_{'backward' if hint else 'forward'}_primitive_desc_create")
        head = [ctypes.byref(descriptor), self.onednn.engine, prop_kind]
        head += [_TANH] if self.cell == "simple_rnn" else []
        tail = [0] + ([ctypes.c_float(0.0), ctypes.c_float(0.0)] if self.cell == "simple_rnn" else [])
        tail += [hint] if hint else []
        status = function(*head, _LEFT_TO_RIGHT, *arguments, *tail, self.onednn.attributes)
        self.onednn.check(status, f"{self.precision} {name} primitive_desc_create")
        return descriptor

    def forward(self, arrays):
        """The forward pass: ``arrays`` holds the inputs, the outputs and a workspace of workspace_bytes."""
        self.onednn.execute(self.forward_primitive, self.forward_memories, {**arrays, "scratchpad": self.scratchpad})

    def backward(self, arrays):
        """The backward pass: the forward's arrays (backward_weights' kernels), diff_dst_* and zeroed diff weights."""
        self.onednn.execute(self.backward_primitive, self.backward_memories, {**arrays, "scratchpad": self.scratchpad})


def bfloat16_refusal(onednn):
    """None where oneDNN makes a bfloat16 RNN primitive on this CPU, else oneDNN's refusal as a phrase."""
    try:
        RecurrentPrimitive(onednn, "lstm", batch=2, time=2, input_dim=16, units=16, precision="bfloat16")
    except RuntimeError as error:  # status 3, unimplemented: no bfloat16 on this CPU (AVX2 only)
        return f"oneDNN has no bfloat16 RNN for this CPU ({error}); it needs AVX-512 BF16 or AMX"
    return None
