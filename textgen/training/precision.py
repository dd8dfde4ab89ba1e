"""Choosing the dtype policy for ``--precision auto`` from the hardware found.

mixed_float16 on a GPU (tensor cores, with loss scaling), mixed_bfloat16 on a
CPU that computes bfloat16 natively (AVX-512 BF16 or AMX), float32 otherwise:
emulated bfloat16 is slower than float32, so it is never assumed.
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
    if has_native_bfloat16(flags):
        return "mixed_bfloat16"
    return "float32"
