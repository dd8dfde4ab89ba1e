"""Choosing the dtype policy for ``--precision auto`` from the hardware found.

mixed_float16 on a GPU (tensor cores, with loss scaling). On a CPU, what was
measured fastest at equal quality on each class of CPU (``AUTO_PRECISION``):
mixed_bfloat16 through the fused kernel's bfloat16 primitives where the CPU
computes bfloat16 natively (AVX-512 BF16 or AMX), float32 otherwise (emulated
bfloat16 is slower than float32, and oneDNN refuses it on AVX2).
"""

from pathlib import Path

# CPU flags (as /proc/cpuinfo spells them) that mean bfloat16 matmuls run natively.
NATIVE_BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}
# The classes of CPU textgen meets, each named by the flag that sets it apart, the most capable
# first: Intel Xeon (AMX tiles + AVX-512 BF16), AMD Zen 4 (AVX-512 BF16), and the rest (AVX2 laptops, Zen 1).
CPU_CLASSES = ("amx_bf16", "avx512_bf16", "avx2")


def cpu_flags(cpuinfo_path="/proc/cpuinfo"):
    """The set of CPU feature flags, or an empty set where the file does not exist (macOS, Windows)."""
    try:
        text = Path(cpuinfo_path).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


# What --precision auto trains in on a CPU of each class, and the measurements that chose it.
# 2x256 LSTM, seq 100, batch 64, each figure a process of its own (benchmarks/train_throughput.py,
# chars/s; benchmarks/time_to_quality.py: held-out nats/char after 95 s on tiny_shakespeare).
# Auto's bfloat16 is the fused kernel's: where it cannot run, auto trains in float32
# (hardware/kernel_choice.choose_training_path).
AUTO_PRECISION = {
    # Intel Xeon with AMX, 2 cores (2026-12-02, each twice): the bfloat16 kernel 64.4k / 62.9k
    # chars/s, the float32 kernel 30.6k / 30.1k, bfloat16 through Keras's layers 24.4k / 24.2k;
    # after 95 s 1.4720 / 1.4716 nats/char in bfloat16 against 1.5118 in float32.
    "amx_bf16": "mixed_bfloat16",
    # AMD Zen 4, 2 cores: the bfloat16 kernel 39.2k-39.6k chars/s, the float32 kernel
    # 24.7k-27.9k (1.4-1.6x), bfloat16 through Keras's layers 25.0k-25.5k.
    "avx512_bf16": "mixed_bfloat16",
    # AVX2 only (Zen 1, laptops): no native bfloat16; oneDNN refuses a bf16 primitive.
    "avx2": "float32",
    "other": "float32",
}


def cpu_class(flags):
    """The first of CPU_CLASSES whose flag the CPU has, or "other" (no AVX2: old or not x86)."""
    return next((name for name in CPU_CLASSES if name in set(flags)), "other")


def has_native_bfloat16(flags):
    """Whether the CPU computes bfloat16 products itself (else oneDNN refuses or emulates them)."""
    return bool(NATIVE_BFLOAT16_FLAGS & set(flags))


def resolve_precision(requested, *, gpu_available, flags):
    """The dtype policy name for a requested precision (only ``auto`` is looked up)."""
    if requested != "auto":
        return requested
    if gpu_available:
        return "mixed_float16"
    return AUTO_PRECISION[cpu_class(flags)]
