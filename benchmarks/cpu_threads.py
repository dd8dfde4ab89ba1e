"""textgen's CPU thread pools for training against TensorFlow's default, same rows, alternating.

TensorFlow fixes its thread pools when its runtime starts, so each measurement is
its own process: textgen's trainer (through train_throughput.textgen_rate) with
textgen's setting (textgen/cpu_threads.py: half the cores per operation, two
operations side by side), and with TensorFlow's default spelled out in its own
environment variables (every operation on all cores, as many side by side),
which textgen leaves alone. Prints chars/s medians and the ratio.

    python benchmarks/cpu_threads.py [--rounds 3] [--rows lstm:256:float32,lstm:256:bfloat16]
"""

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from textgen.hardware.cpu_threads import available_cores

BENCHMARKS = Path(__file__).resolve().parent
MEASURE = (
    "import sys; sys.path.insert(0, {directory!r}); import train_throughput as t; "
    "print(t.textgen_rate(t.CORPUS, {cell!r}, {units}, {precision!r}, {steps}))"
)


def rate(cell, units, precision, steps, environment):
    code = MEASURE.format(directory=str(BENCHMARKS), cell=cell, units=units, precision=precision, steps=steps)
    completed = subprocess.run(
        [sys.executable, "-c", code], env=environment, check=True, capture_output=True, text=True
    )
    return float(completed.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument(
        "--rows",
        default="lstm:256:float32,lstm:256:bfloat16,gru:256:float32,gru:256:bfloat16,"
        "simple_rnn:256:float32,simple_rnn:256:bfloat16",
    )
    arguments = parser.parse_args()
    cores = str(available_cores())
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        base.pop(name, None)
    settings = {"textgen": base, "tensorflow": dict(base, TF_NUM_INTRAOP_THREADS=cores, TF_NUM_INTEROP_THREADS=cores)}
    rows = [
        (cell, int(units), precision)
        for cell, units, precision in (row.split(":") for row in arguments.rows.split(","))
    ]
    rates = {(row, name): [] for row in rows for name in settings}
    for _ in range(arguments.rounds):  # alternate, so drift on a shared machine hits both
        for row in rows:
            for name, environment in settings.items():
                rates[row, name].append(rate(*row, arguments.steps, environment))
    print(f"training chars/s, 2 layers, seq 100, batch 64, {cores} cores; median of {arguments.rounds} rounds")
    print(f"{'cell':<11} {'units':>5} {'precision':<9} {'textgen':>9} {'TF default':>10} {'ratio':>6}  each round")
    for row in rows:
        ours, theirs = (statistics.median(rates[row, name]) for name in settings)
        each = " / ".join(", ".join(f"{value:,.0f}" for value in rates[row, name]) for name in settings)
        print(f"{row[0]:<11} {row[1]:>5} {row[2]:<9} {ours:>9,.0f} {theirs:>10,.0f} {ours / theirs:>5.2f}x  {each}")


if __name__ == "__main__":
    main()
