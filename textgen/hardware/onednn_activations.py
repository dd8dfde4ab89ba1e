"""The cells' sigmoid and tanh through oneDNN's JIT-compiled logistic, where that is faster here.

At a batch of 64 the NumPy engine's LSTM step spends as long in its activations
as in its matrix products on an AVX2-only AMD EPYC: NumPy's float32 tanh costs
4.4 ns an element there (its vector code gathers from a table, and gathers are
slow on that CPU), oneDNN's logistic 1.7 ns (it computes exp with no table).
tanh follows from the logistic: tanh(x) = 2 sigmoid(2 x) - 1, and the three
extra passes are plain arithmetic, ~0.2 ns an element.

Which is faster depends on the CPU (an Intel Xeon's gathers are fast), so
``FASTEST`` times both on an LSTM-sized array, once, and keeps the winner.
Small arrays (a single stream) always stay in NumPy: a call into oneDNN costs
more than their whole activation.

oneDNN's CPU package runs on OpenMP, whose threads spin after each call: beside
NumPy's own BLAS threads they fought over the cores (a batch-64 step went from
3 ms to 23 ms). So each thread that calls in here asks OpenMP for one thread:
the logistic runs on the caller's core, inline. (While the batch's products are
oneDNN's, OpenBLAS's threads sleep and the products ask for every core again:
hardware/onednn_products.py.)
"""

import ctypes
import threading
import time

import numpy as np

from textgen.cells import NUMPY_ACTIVATIONS
from textgen.hardware.onednn import ARGUMENTS, QUERY_SCRATCHPAD, _ExecArgument, onednn_status, openmp_set_num_threads

_FORWARD_INFERENCE = 96  # dnnl_forward_inference
_LOGISTIC = 41  # dnnl_eltwise_logistic (0x29)
SMALLEST = 16384  # elements: below this NumPy won here (a oneDNN call costs ~13 us, and tanh adds three passes)
TRIAL_SHAPE = (64, 1024)  # the gates of a 256-unit LSTM layer at a batch of 64


class OneDNNActivations:
    """The three methods of cells.NumpyActivations, through oneDNN's logistic for arrays big enough."""

    def __init__(self, onednn):
        self.onednn = onednn
        self.primitives = {}  # element count -> _Logistic: made once per size
        self.lock = threading.Lock()  # one oneDNN stream, and a batcher thread per served model
        self.one_thread = threading.local()
        self.set_openmp_threads = openmp_set_num_threads()

    def sigmoid_of_halves_(self, x):
        if not self._fits(x):
            return NUMPY_ACTIVATIONS.sigmoid_of_halves_(x)
        x *= 2.0  # z / 2 back to z (exact)
        self._logistic(x)
        return x

    def tanh(self, x):
        if not self._fits(x):
            return NUMPY_ACTIVATIONS.tanh(x)
        y = x * 2.0  # a new array, laid out as x is
        self._logistic(y)
        y *= 2.0
        y -= 1.0  # tanh(x) = 2 sigmoid(2 x) - 1
        return y

    def gates_(self, gates, sigmoid_columns):
        if not self._fits(gates):
            return NUMPY_ACTIVATIONS.gates_(gates, sigmoid_columns)
        rest = gates[:, sigmoid_columns:]
        # The sigmoid columns hold z / 2: doubled back to z; the tanh columns x to 2 x, so that one
        # logistic over the whole block covers them too
        gates *= 2.0
        self._logistic(gates)
        rest *= 2.0
        rest -= 1.0
        return gates

    @staticmethod
    def _fits(x):
        return x.dtype == np.float32 and (x.flags.c_contiguous or x.flags.f_contiguous)

    def _logistic(self, x):
        """sigmoid in place over x's memory: one contiguous block, in C or Fortran order."""
        if not getattr(self.one_thread, "set", False) and self.set_openmp_threads is not None:
            self.set_openmp_threads(1)  # this thread's OpenMP calls run inline (see the module's note)
            self.one_thread.set = True
        with self.lock:
            logistic = self.primitives.get(x.size) or self.primitives.setdefault(x.size, _Logistic(self.onednn, x.size))
            logistic(x.__array_interface__["data"][0])


class _Logistic:
    """oneDNN's logistic over ``size`` float32s in place, made once: a call sets one address and runs.

    (OneDNN.execute binds every argument anew, which cost 40 us of a 50 us call here.)"""

    def __init__(self, onednn, size):
        self.onednn, library = onednn, onednn.library
        descriptor = onednn.memory_desc((size,), (1,))
        primitive_descriptor = ctypes.c_void_p()
        onednn.check(
            library.dnnl_eltwise_forward_primitive_desc_create(
                ctypes.byref(primitive_descriptor),
                onednn.engine,
                _FORWARD_INFERENCE,
                _LOGISTIC,
                descriptor,
                descriptor,
                ctypes.c_float(0),
                ctypes.c_float(0),
                onednn.attributes,
            ),
            "eltwise_forward_primitive_desc_create",
        )
        self.primitive = onednn.primitive(primitive_descriptor)
        scratchpad = onednn.query_descriptor(primitive_descriptor, QUERY_SCRATCHPAD)
        self.scratchpad = np.empty(max(onednn.size(scratchpad), 1), np.uint8)  # kept alive with the primitive
        self.memory, scratchpad_memory = onednn.memory(descriptor), onednn.memory(scratchpad)
        onednn.check(
            library.dnnl_memory_set_data_handle(scratchpad_memory, ctypes.c_void_p(self.scratchpad.ctypes.data)),
            "memory_set_data_handle",
        )
        # One memory is both source and destination: oneDNN's eltwise runs in place.
        self.arguments = (_ExecArgument * 3)(
            _ExecArgument(ARGUMENTS["src"], self.memory),
            _ExecArgument(ARGUMENTS["dst"], self.memory),
            _ExecArgument(ARGUMENTS["scratchpad"], scratchpad_memory),
        )
        self.set_handle, self.execute, self.wait = (
            library.dnnl_memory_set_data_handle,
            library.dnnl_primitive_execute,
            library.dnnl_stream_wait,
        )

    def __call__(self, address):
        check, stream = self.onednn.check, self.onednn.stream
        check(self.set_handle(self.memory, ctypes.c_void_p(address)), "memory_set_data_handle")
        check(self.execute(self.primitive, stream, 3, self.arguments), "primitive_execute")
        check(self.wait(stream), "stream_wait")


def _seconds_per_call(activations, array, repeats=5):
    """The best of three timings of an LSTM layer's activations: its gates, then tanh of its cell state."""
    work, cell_state = array.copy(), np.ascontiguousarray(array[:, : array.shape[1] // 4])
    activations.gates_(work, work.shape[1])  # once first: a primitive is made, code paths warm
    best = float("inf")
    for _ in range(3):  # a busy moment of the machine must not decide
        started = time.perf_counter()
        for _ in range(repeats):
            np.copyto(work, array)
            activations.gates_(work, 3 * work.shape[1] // 4)
            activations.tanh(cell_state)
        best = min(best, time.perf_counter() - started)
    return best


class FastestActivations:
    """NumPy's activations for small arrays; for big ones the faster of NumPy's and oneDNN's here,
    timed when the first big array comes (a single stream never pays for the timing)."""

    def __init__(self):
        self.big = None
        self.lock = threading.Lock()

    def _for(self, x):
        if x.size < SMALLEST:
            return NUMPY_ACTIVATIONS
        if self.big is None:
            with self.lock:
                self.big = self.big or _measured_choice()
        return self.big

    def sigmoid_of_halves_(self, x):
        return self._for(x).sigmoid_of_halves_(x)

    def tanh(self, x):
        return self._for(x).tanh(x)

    def gates_(self, gates, sigmoid_columns):
        return self._for(gates).gates_(gates, sigmoid_columns)


def _measured_choice():
    onednn, _ = onednn_status()
    if onednn is None or openmp_set_num_threads() is None:
        return NUMPY_ACTIVATIONS
    candidate = OneDNNActivations(onednn)
    trial = np.random.default_rng(0).standard_normal(TRIAL_SHAPE).astype(np.float32)
    if _seconds_per_call(candidate, trial) < _seconds_per_call(NUMPY_ACTIVATIONS, trial):
        return candidate
    return NUMPY_ACTIVATIONS


FASTEST = FastestActivations()  # one per process: the timing is done once
