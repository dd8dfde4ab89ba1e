"""The line every benchmark prints first: which CPU made its figures.

Speed and even quality per minute depend on it: with AVX-512 BF16 (AMD Zen 4)
`--precision auto` trains in bfloat16; with AVX2 only (most laptops, Zen 1)
in float32, 2-3x slower.
"""

import os
import re
from pathlib import Path

# The flags that decide textgen's speed, as /proc/cpuinfo spells them.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def describe_cpu():
    """'AMD EPYC, 2 cores; avx2 fma' (the model, the cores this process may use, the flags that matter)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "CPU unknown (no /proc/cpuinfo)"
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE).group(1).split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    present = " ".join(flag for flag in FLAGS if flag in flags) or "none of " + " ".join(FLAGS)
    return f"{model.group(1).strip() if model else 'CPU'}, {cores} cores; {present}"
