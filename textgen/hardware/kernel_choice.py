"""Which recurrent kernel a run trains with, and in which precision: the fused oneDNN one or Keras's layers.

``choose_training_path`` is what training/loop.py asks; it follows
hardware/precision.AUTO_PRECISION (the measured choice per CPU class) and
falls back, with a one-line note, where oneDNN cannot do what was asked.
"""

from textgen.errors import TextgenError
from textgen.hardware.onednn import onednn_status
from textgen.hardware.onednn_rnn import bfloat16_refusal
from textgen.hardware.precision import has_native_bfloat16, resolve_precision

# The policies the fused kernel trains in, by Keras's name -> the kernel's precision.
KERNEL_PRECISIONS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


def choose_kernel(requested, *, precision, gpu_available, native_bfloat16):
    """Whether training uses the fused layers, and a line saying why not where a user may wonder.

    ``native_bfloat16``: the CPU computes bfloat16 itself (AVX-512 BF16 or AMX). Without
    it, oneDNN either refuses a bfloat16 primitive (AVX2) or emulates it slowly.

    Returns:
        ("onednn" or "keras", note or None).

    Raises:
        TextgenError: ``--kernel onednn`` with a precision it cannot train in here.
    """
    if requested == "keras":
        return "keras", None
    if gpu_available:  # Keras's layers run cuDNN's fused kernel there
        return "keras", None if requested == "auto" else "the oneDNN kernel is for CPUs; on a GPU training uses cuDNN"
    if precision not in KERNEL_PRECISIONS:
        if requested == "onednn":
            raise TextgenError(
                f"--kernel onednn trains in {' or '.join(KERNEL_PRECISIONS)}, not {precision}; "
                "use --kernel keras or another --precision"
            )
        return "keras", None
    onednn, reason = onednn_status()
    if onednn is None:
        return "keras", f"note: oneDNN's fused kernel is not available ({reason}); training uses Keras's layers"
    if KERNEL_PRECISIONS[precision] == "bfloat16":
        refusal = bfloat16_refusal(onednn) if native_bfloat16 else "this CPU has neither AVX-512 BF16 nor AMX"
        if refusal:
            if requested == "onednn":
                raise TextgenError(f"--kernel onednn cannot train in {precision} here: {refusal}")
            return (
                "keras",
                f"note: the oneDNN kernel cannot train in {precision} here ({refusal}); training uses Keras's layers",
            )
    return "onednn", None


def choose_training_path(train_config, *, gpu_available, flags):
    """(precision, kernel, note or None): the dtype policy and recurrent kernel a run trains with.

    ``--precision auto`` follows precision.AUTO_PRECISION for the CPU's class. Its
    bfloat16 is the fused kernel's: where that kernel cannot train in bfloat16 (no
    oneDNN, ``--kernel keras``), auto trains in float32 instead, which through the
    kernel was faster than bfloat16 through Keras's layers on every CPU measured.
    """
    native = has_native_bfloat16(flags)
    precision = resolve_precision(train_config.precision, gpu_available=gpu_available, flags=flags)
    kernel, note = choose_kernel(
        train_config.kernel, precision=precision, gpu_available=gpu_available, native_bfloat16=native
    )
    if train_config.precision == "auto" and precision == "mixed_bfloat16" and kernel != "onednn":
        precision = "float32"
        kernel, note = choose_kernel(
            train_config.kernel, precision=precision, gpu_available=gpu_available, native_bfloat16=native
        )
    return precision, kernel, note
