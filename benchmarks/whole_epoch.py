"""One epoch as a user sees it: whole `textgen train` processes against a plain PyTorch script.

Times, from process start to exit, on tiny_shakespeare.txt:

    textgen train CORPUS --cell lstm --layers 2 --units 256 --seq-length 100
                  --batch-size 64 --epochs 1 --precision float32   (and --precision auto)
    python benchmarks/pytorch_epoch.py CORPUS out.pt               (and --precision bfloat16)

Everything is inside the wall time: imports, reading the corpus, building the
model, the epoch, and what each writes at the end (textgen also validates,
logs, writes text samples and saves; the PyTorch script only saves). The runs
alternate, and the table gives medians and each textgen row's speed relative to
the PyTorch float32 script (> 1 means textgen is faster).

    python benchmarks/whole_epoch.py [--rounds 2]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_cpu

BENCHMARKS = Path(__file__).resolve().parent
CORPUS = BENCHMARKS.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"
MODEL_OPTIONS = [
    "--cell",
    "lstm",
    "--layers",
    "2",
    "--units",
    "256",
    "--seq-length",
    "100",
    "--batch-size",
    "64",
    "--epochs",
    "1",
]
RUNS = {
    "textgen float32": [
        "-m",
        "textgen",
        "train",
        str(CORPUS),
        "--name",
        "run",
        *MODEL_OPTIONS,
        "--precision",
        "float32",
    ],
    "textgen auto": ["-m", "textgen", "train", str(CORPUS), "--name", "run", *MODEL_OPTIONS, "--precision", "auto"],
    "pytorch float32": [str(BENCHMARKS / "pytorch_epoch.py"), str(CORPUS), "model.pt"],
    "pytorch bfloat16": [str(BENCHMARKS / "pytorch_epoch.py"), str(CORPUS), "model.pt", "--precision", "bfloat16"],
}


def wall_seconds(arguments):
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        subprocess.run([sys.executable, *arguments], cwd=scratch, check=True, capture_output=True)
        return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", default=",".join(RUNS), help="which rows, comma-separated (all by default)")
    arguments = parser.parse_args()
    print(describe_cpu())
    runs = {name: RUNS[name] for name in arguments.runs.split(",")}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    seconds = {name: [] for name in runs}
    for _ in range(arguments.rounds):  # alternate, so drift on a shared machine hits every row
        for name, run_arguments in runs.items():
            seconds[name].append(wall_seconds(run_arguments))
    baseline = statistics.median(seconds["pytorch float32"])
    print(
        f"one epoch of {CORPUS.name}, LSTM 2x256, seq 100, batch 64, whole process; median of {arguments.rounds} rounds"
    )
    print(f"{'run':<17} {'seconds':>8} {'each round':>20} {'vs pytorch float32':>19}")
    for name, times in seconds.items():
        each = ", ".join(f"{value:.1f}" for value in times)
        print(f"{name:<17} {statistics.median(times):>8.1f} {each:>20} {baseline / statistics.median(times):>18.2f}x")


if __name__ == "__main__":
    main()
