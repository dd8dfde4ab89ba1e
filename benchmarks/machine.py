"""The line every benchmark prints first: which CPU made its figures, and its class.

Speed and even quality per minute depend on it. The three classes textgen meets
(textgen/hardware/precision.py): amx_bf16 (Intel Xeon: AMX + AVX-512 BF16),
avx512_bf16 (AMD Zen 4), avx2 (most laptops, Zen 1: no native bfloat16).
"""

import os
import re
from pathlib import Path

from textgen.hardware.precision import cpu_class, cpu_flags  # plain Python: loads no native library

# The flags that decide textgen's speed, as /proc/cpuinfo spells them.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def describe_cpu():
    """'AMD EPYC, 2 cores; avx2 fma; class avx2' (model, cores this process may use, flags that matter, class)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "CPU unknown (no /proc/cpuinfo)"
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = cpu_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    present = " ".join(flag for flag in FLAGS if flag in flags) or "none of " + " ".join(FLAGS)
    return f"{model.group(1).strip() if model else 'CPU'}, {cores} cores; {present}; class {cpu_class(flags)}"
