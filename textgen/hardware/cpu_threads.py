"""How training spreads TensorFlow's work over the CPU cores.

A recurrent layer trains as a loop of small operations per time step: a
(64, 256) x (256, 1024) product, a few element-wise gates, their gradients.
TensorFlow's default splits every operation over all cores and joins them
again, and for operations this small the splitting and joining costs more
than it saves. Giving each operation half the cores and letting two of them run
side by side (TensorFlow runs independent operations of a step concurrently,
such as the input and weight gradients of the backward pass) trained the
default LSTM 1.38x faster in float32 and 1.18x in bfloat16 on a 2-core CPU
(benchmarks/RESULTS.md, "CPU threads").

TensorFlow's own environment variables (TF_NUM_INTRAOP_THREADS,
TF_NUM_INTEROP_THREADS) win over this, and a process whose TensorFlow runtime
is already running (a test session, a notebook) keeps what it has: the
thread pools are fixed once the first operation runs.
"""

import os

# Operations of one step that may run at the same time (TensorFlow's inter-op pool).
CONCURRENT_OPERATIONS = 2


def available_cores():
    """The cores this process may run on (its CPU affinity), not all the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_operation(cores):
    """Cores for each operation: half of them, at least one."""
    return max(1, cores // CONCURRENT_OPERATIONS)


def configure_for_training(cores=None, *, fused_kernel=False):
    """Set TensorFlow's CPU thread pools for training, where still possible.

    With the fused recurrent kernel (hardware/fused_rnn.py) the recurrent
    layers run on oneDNN's own OpenMP threads over every core; TensorFlow then
    runs one operation at a time, since a second one waiting for work only
    competed with oneDNN's (2x256 LSTM, seq 100, 2 cores: 537 ms per step with
    two side by side, 292-311 with one), and gives each operation every core,
    for the output layer of a large vocabulary (benchmarks/RESULTS.md).

    Returns:
        (threads per operation, concurrent operations) as set, or None where
        they were left alone (set by the user's environment, or the runtime
        already started).
    """
    if "TF_NUM_INTRAOP_THREADS" in os.environ or "TF_NUM_INTEROP_THREADS" in os.environ:
        return None
    import tensorflow as tf  # here, not at the top: the NumPy engine reads available_cores without TensorFlow

    cores = cores or available_cores()
    per_operation = cores if fused_kernel else threads_per_operation(cores)
    concurrent = 1 if fused_kernel else CONCURRENT_OPERATIONS
    try:
        tf.config.threading.set_intra_op_parallelism_threads(per_operation)
        tf.config.threading.set_inter_op_parallelism_threads(concurrent)
    except RuntimeError:  # "... cannot be modified after initialization"
        return None
    return per_operation, concurrent
