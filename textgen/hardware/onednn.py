"""oneDNN's C API through ctypes: the library, its engine and stream, memory, and reorders.

PyTorch trains an LSTM on a CPU with one call per layer to oneDNN's RNN
primitive: the whole sequence, every time step's gate math fused into JIT-
compiled kernels, and a workspace that keeps what the backward pass needs.
TensorFlow exposes no such kernel, so Keras runs a loop of small ops per time
step. textgen calls the same primitive from the ``onednn-cpu-gomp`` package
(oneDNN 3.2's ``libdnnl.so``): this module holds what every oneDNN call needs
(loading the library, checked calls, memory descriptors, a ``Reorder`` that
converts layouts and types); hardware/onednn_rnn.py builds the recurrent
primitives on it, and hardware/fused_rnn.py makes them a TensorFlow op.
"""

import ctypes
import sys
import threading
from pathlib import Path

import numpy as np

# Values of oneDNN 3.2's enums and #defines (dnnl_types.h), printed by a C probe compiled
# against the onednn-devel-cpu-gomp headers.
F32, BF16, _CPU, _IN_ORDER = 3, 2, 1, 1
ANY = 1  # the format tag that lets a primitive choose the layout
QUERY_IMPLEMENTATION, QUERY_WORKSPACE, QUERY_SCRATCHPAD, QUERY_ARGUMENT = 8, 135, 136, 255
# The scratchpad (temporary memory) is ours, passed in with each call: oneDNN's default keeps
# it per thread, sized when the primitive is made, and TensorFlow may run the backward pass on
# another thread than the one that made it (that crashed).
_SCRATCHPAD_MODE_USER = 1
ARGUMENTS = {
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
        self.engine, self.attributes = ctypes.c_void_p(), ctypes.c_void_p()
        self.check(library.dnnl_primitive_attr_create(ctypes.byref(self.attributes)), "primitive_attr_create")
        mode = library.dnnl_primitive_attr_set_scratchpad_mode(self.attributes, _SCRATCHPAD_MODE_USER)
        self.check(mode, "set_scratchpad_mode")
        self.check(library.dnnl_engine_create(ctypes.byref(self.engine), _CPU, 0), "engine_create")
        self.stream = self.new_stream()

    def new_stream(self):
        """A stream of its own, for a caller whose calls may run beside another thread's."""
        stream = ctypes.c_void_p()
        self.check(self.library.dnnl_stream_create(ctypes.byref(stream), self.engine, _IN_ORDER), "stream_create")
        return stream

    @staticmethod
    def check(status, what):
        if status != 0:
            raise RuntimeError(f"oneDNN {what} failed with status {status}")

    def memory_desc(self, dims, layout, data_type=F32):
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
            self.library.dnnl_primitive_desc_query(primitive_descriptor, QUERY_IMPLEMENTATION, 0, ctypes.byref(name)),
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
            arguments[index] = _ExecArgument(ARGUMENTS[name], memories[name])
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
        scratchpad = onednn.query_descriptor(self.descriptor, QUERY_SCRATCHPAD)
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


_ONEDNN = None  # the engine and stream, made once per process
_ONEDNN_LOCK = threading.Lock()


def onednn_status():
    """(OneDNN or None, the reason it is missing)."""
    global _ONEDNN
    with _ONEDNN_LOCK:
        if _ONEDNN is None:
            library, reason = load_library()
            if library is None:
                return None, reason
            _ONEDNN = OneDNN(library)
    return _ONEDNN, None


def openmp_set_num_threads():
    """libgomp's omp_set_num_threads, from the copy oneDNN loaded (None if it cannot be found).

    The count is each calling thread's own: a thread that calls oneDNN sets it for its calls alone."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path).omp_set_num_threads
        except (OSError, AttributeError):
            continue
    return None
