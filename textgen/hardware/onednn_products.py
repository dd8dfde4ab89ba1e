"""The NumPy engine's big matrix products through oneDNN's sgemm, where that is faster here.

A batch-64 step of a 2x256 LSTM is three (64, 256) x (256, 1024) products and a
small output product. NumPy hands them to OpenBLAS, which picks its kernels by
CPU model: on an AMD EPYC of family 26 (Zen 5, AVX-512) OpenBLAS 0.3.31 does not
know the model and falls back to its AVX2 ("Haswell") kernels, 175 us a product
on 2 cores, where oneDNN's sgemm, JIT-compiled for the AVX-512 it finds, takes
95-105 us. oneDNN's sgemm also adds to its output (beta = 1), so x W + b + h U
is built in one buffer with no temporary and no separate pass for the adds.

Which is faster depends on the CPU, the BLAS and the shapes, so ``FASTEST``
times both at the first batch of 8 rows or more, and keeps the winner for the
batches of the process (and the small products around them: FastestProducts
says why). The NumPy engine times whole steps, not one product: on an AMD EPYC
of family 23 (Zen 2, AVX2) the two tie on one (64, 256) x (256, 1024) product
(242-255 us against 252-285), and the trial picked oneDNN, but a batch-64 step
took 1.36 ms through it against 1.15 through NumPy (oneDNN's threads beside the
activations and the adds). A process that only ever writes one stream never pays
for the trial and stays in NumPy: there a call through ctypes (~5 us) is a large
part of a product (~12 us).

oneDNN's CPU package runs on OpenMP. A product asks for every core this process
may use, and leaves them asked for: while the products are oneDNN's, OpenBLAS's
threads are asleep and the activations' logistic (onednn_activations.py) runs
on those cores too (a batch-64 step in one process 408-421 us against 511-654
on one; whole `textgen sample --num-samples 64` runs 114k-124k chars/s against
113k-119k, alternated); when NumPy's products take over again, the thread goes
back to one OpenMP thread (narrow).
"""

import ctypes
import threading
import time

import numpy as np

from textgen.cells import NUMPY_PRODUCTS
from textgen.hardware.cpu_threads import available_cores
from textgen.hardware.onednn import onednn_status, openmp_set_num_threads

SMALLEST_BATCH = 8  # rows: until a product this big comes, NumPy's are used without a trial
_LARGEST_TRIAL = 1024  # rows: a larger first batch is timed at this many
# How long each library's worker threads spin after a call, before they sleep: OpenBLAS's
# 2^28 cycles (its THREAD_TIMEOUT), libgomp's GOMP_SPINCOUNT (300,000 turns of a pause loop).
OPENBLAS_SPIN_SECONDS, OPENMP_SPIN_SECONDS = 0.15, 0.02
# Small products follow the batches' library until this long after the last batch (FastestProducts):
# a server whose streams come and go around 8 changes library at most once a second.
QUIET_SECONDS = 1.0

_INDEX = ctypes.c_int64  # dnnl_dim_t


class OneDNNProducts:
    """The two methods of cells.NumpyProducts through dnnl_sgemm (row-major, no transposes)."""

    def __init__(self, library, set_openmp_threads, threads):
        self.sgemm = library.dnnl_sgemm
        self.sgemm.argtypes = [
            ctypes.c_char,
            ctypes.c_char,
            _INDEX,
            _INDEX,
            _INDEX,
            ctypes.c_float,
            ctypes.c_void_p,
            _INDEX,
            ctypes.c_void_p,
            _INDEX,
            ctypes.c_float,
            ctypes.c_void_p,
            _INDEX,
        ]
        self.sgemm.restype = ctypes.c_int
        self.set_openmp_threads, self.threads = set_openmp_threads, threads
        self.widened = threading.local()  # .on: this thread's OpenMP calls run on ``threads`` threads

    @staticmethod
    def fits(inputs, kernel, out):
        """sgemm reads row-major float32 matrices whose rows may be spaced apart but not their columns."""
        return all(
            array.dtype == np.float32 and array.ndim == 2 and array.strides[1] == 4 and array.strides[0] % 4 == 0
            for array in (inputs, kernel, out)
        )

    def multiply_add_(self, inputs, kernel, kernel_transposed, out):
        """out += inputs @ kernel in place: inputs (rows, in), kernel (in, columns), out (rows, columns)."""
        if not self.fits(inputs, kernel, out):
            return NUMPY_PRODUCTS.multiply_add_(inputs, kernel, kernel_transposed, out)
        (rows, depth), columns = inputs.shape, kernel.shape[1]
        self.widen()
        status = self.sgemm(
            b"N",
            b"N",
            rows,
            columns,
            depth,
            1.0,
            inputs.ctypes.data,
            inputs.strides[0] // 4,
            kernel.ctypes.data,
            kernel.strides[0] // 4,
            1.0,  # beta: add to what out holds
            out.ctypes.data,
            out.strides[0] // 4,
        )
        if status != 0:
            raise RuntimeError(f"oneDNN sgemm failed with status {status}")
        return out

    def widen(self):
        """Every core for this thread's oneDNN calls (the activations may have asked for one: see narrow)."""
        self.set_openmp_threads(self.threads)
        self.widened.on = True

    def narrow(self):
        """Back to one OpenMP thread for this thread's oneDNN calls (the activations' logistic), before
        NumPy's products take over: beside OpenBLAS's threads, two OpenMP ones made a step 23 ms."""
        if getattr(self.widened, "on", False):
            self.set_openmp_threads(1)
            self.widened.on = False

    def project(self, inputs, kernel, kernel_transposed, bias):
        """inputs @ kernel + bias as a new (..., columns) array: the bias first, the product added to it."""
        out = np.empty((*inputs.shape[:-1], kernel.shape[1]), np.float32)
        out[...] = bias
        if inputs.ndim == 2:
            return self.multiply_add_(inputs, kernel, kernel_transposed, out)
        # (batch, time, in): one product of (batch * time) rows
        rows = np.ascontiguousarray(inputs).reshape(-1, inputs.shape[-1])
        self.multiply_add_(rows, kernel, kernel_transposed, out.reshape(-1, kernel.shape[1]))
        return out


def _seconds(products, inputs, kernel, kernel_transposed, out, repeats=3):
    """The best of three timings of ``repeats`` products (a busy moment of the machine must not decide)."""
    products.multiply_add_(inputs, kernel, kernel_transposed, out)  # once first: code paths warm, threads up
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            products.multiply_add_(inputs, kernel, kernel_transposed, out)
        best = min(best, time.perf_counter() - started)
    return best


class FastestProducts:
    """NumPy's products until the first batch of SMALLEST_BATCH rows or more; then the faster of
    NumPy's and oneDNN's at that first shape, timed once, for batches from then on (and oneDNN's
    where an engine's steps run faster through oneDNN's fused layers: choose_fused).

    Never a mix of the two in one stretch of time: each library keeps its worker threads spinning
    after a call (OpenBLAS's for ~0.1 s), and beside the other's they fought over the cores: a
    batch-64 step of a 2x256 LSTM took 550 us through oneDNN alone, 790 through NumPy alone, 9-11 ms
    mixed, and 2.2 ms through oneDNN with a batch-1 NumPy product every tenth step (a new prompt).
    So while batches come (one came in the last QUIET_SECONDS), the small products go the big ones'
    way too; after that a single stream goes back to NumPy, faster there (a step 52 us, 67 through
    oneDNN: a call through ctypes is a large part of a small product)."""

    def __init__(self):
        self.chosen = None  # OneDNNProducts or NUMPY_PRODUCTS, once timed
        self.last_batch = 0.0  # time.monotonic() of the last product of SMALLEST_BATCH rows or more
        self.lock = threading.Lock()

    def _for(self, inputs, kernel):
        rows = inputs.shape[0]  # streams: a prompt's time steps are not (one prompt is NumPy's, untimed)
        if rows < SMALLEST_BATCH:
            if self.chosen is None or self.chosen is NUMPY_PRODUCTS:
                return NUMPY_PRODUCTS
            if time.monotonic() - self.last_batch < QUIET_SECONDS:
                return self.chosen
            self.chosen.narrow()
            return NUMPY_PRODUCTS
        if self.chosen is None:  # no engine chose before this batch: time this product's shape
            self.choose(_product_trial(min(rows, _LARGEST_TRIAL), *kernel.shape))
        self.last_batch = time.monotonic()
        return self.chosen

    def choose(self, seconds_with):
        """Time ``seconds_with(products)`` (the caller's work: an engine's steps) with each library, once
        per process, and keep the faster."""
        with self.lock:
            if self.chosen is None:
                self.chosen = _measured_choice(seconds_with)

    def choose_fused(self, seconds_with):
        """True where ``seconds_with(products)`` (an engine's steps through oneDNN's fused layers and
        ``products``) is faster than ``seconds_with(None)`` (its cells' steps through the chosen
        products); then batches take oneDNN's products from now on, whatever the product trial chose."""
        with self.lock:
            candidate = self.chosen if isinstance(self.chosen, OneDNNProducts) else _onednn_products()
            if candidate is NUMPY_PRODUCTS:
                return False
            cells_seconds = seconds_with(None)
            if candidate is not self.chosen:
                time.sleep(OPENBLAS_SPIN_SECONDS)  # the cells' last products were NumPy's
            try:
                fused_seconds = seconds_with(candidate)
            except RuntimeError:  # oneDNN refused a primitive for these shapes: the cells, which always run
                fused_seconds = float("inf")
            if fused_seconds < cells_seconds:
                self.chosen = candidate
                return True
            if candidate is not self.chosen:
                candidate.narrow()
                time.sleep(OPENMP_SPIN_SECONDS)
            return False

    def multiply_add_(self, inputs, kernel, kernel_transposed, out):
        return self._for(inputs, kernel).multiply_add_(inputs, kernel, kernel_transposed, out)

    def project(self, inputs, kernel, kernel_transposed, bias):
        return self._for(inputs, kernel).project(inputs, kernel, kernel_transposed, bias)


def _product_trial(rows, depth, columns):
    """seconds_with for one (rows, depth) x (depth, columns) product."""
    generator = np.random.default_rng(0)
    inputs = generator.standard_normal((rows, depth)).astype(np.float32)
    kernel = generator.standard_normal((depth, columns)).astype(np.float32)
    transposed, out = np.ascontiguousarray(kernel.T), np.zeros((rows, columns), np.float32)
    return lambda products: _seconds(products, inputs, kernel, transposed, out)


def _measured_choice(seconds_with):
    """NUMPY_PRODUCTS or OneDNNProducts: the one with which ``seconds_with`` took less, each timed
    while the other's threads are asleep (NumPy's first: OpenBLAS's threads spinning from the prompt's
    products are its own)."""
    candidate = _onednn_products()
    if candidate is NUMPY_PRODUCTS:
        return NUMPY_PRODUCTS
    numpy_seconds = seconds_with(NUMPY_PRODUCTS)
    time.sleep(OPENBLAS_SPIN_SECONDS)  # NumPy's last products leave OpenBLAS's threads spinning
    try:
        onednn_seconds = seconds_with(candidate)
    except RuntimeError:  # sgemm refused (a status other than success): NumPy's products, which always run
        onednn_seconds = float("inf")
    if onednn_seconds < numpy_seconds:
        return candidate
    candidate.narrow()  # the activations back on one OpenMP thread, beside OpenBLAS's
    time.sleep(OPENMP_SPIN_SECONDS)
    return NUMPY_PRODUCTS


def _onednn_products():
    onednn, _ = onednn_status()
    set_openmp_threads = openmp_set_num_threads() if onednn is not None else None
    if set_openmp_threads is None:
        return NUMPY_PRODUCTS
    return OneDNNProducts(onednn.library, set_openmp_threads, available_cores())


FASTEST = FastestProducts()  # one per process: each shape is timed once
