"""Before and after a change: the same `textgen` commands run from an older commit and from this checkout.

    python benchmarks/before_after.py --before 643f702 [--rounds 2] [--budget 40s] [--precision float32]

For a change that should leave behaviour and speed alone (a restructure), this
runs whole `textgen` processes from a git worktree of ``--before`` and from the
working tree, alternating, on this machine, and prints the ratios after/before:

    training    chars/s of the first epoch of `textgen train tiny_shakespeare --time-budget B --precision P`
    sampling    seconds of `textgen sample MODEL --length 20000 --seed 1` (start-up included)
    start-up    seconds of `textgen sample MODEL --length 1`

Both sides sample the model the older commit trained (a newer textgen reads
older model directories), and the two 20,000-character samples must be equal.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_cpu

REPOSITORY = Path(__file__).resolve().parent.parent
CORPUS = REPOSITORY.parent / "shared" / "corpora" / "tiny_shakespeare.txt"


def textgen(source, *arguments, cwd):
    """Run `python -m textgen ARGUMENTS` with textgen imported from ``source``; (seconds, stdout)."""
    environment = {**os.environ, "PYTHONPATH": str(source), "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "textgen", *map(str, arguments)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, result.stdout


def training_rate(source, name, budget, precision, scratch):
    _, output = textgen(
        source,
        "train",
        CORPUS,
        "--name",
        name,
        "--overwrite",
        "--time-budget",
        budget,
        "--precision",
        precision,
        cwd=scratch,
    )
    return float(re.search(r"^epoch 1: .* ([\d,]+) chars/s", output, re.MULTILINE).group(1).replace(",", ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the older commit")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", default="40s", help="each training run's --time-budget")
    parser.add_argument("--precision", default="float32", help="each training run's --precision (auto: this CPU's)")
    options = parser.parse_args()
    print(describe_cpu())
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "before"
        subprocess.run(
            ["git", "-C", REPOSITORY, "worktree", "add", "--detach", worktree, options.before],
            check=True,
            capture_output=True,
        )
        try:
            sides = {"before": worktree, "after": REPOSITORY}
            figures = {(side, measure): [] for side in sides for measure in ("training", "sampling", "start-up")}
            samples = {}
            for round_number in range(1, options.rounds + 1):
                for side, source in sides.items():
                    rate = training_rate(source, side, options.budget, options.precision, scratch)
                    figures[side, "training"].append(rate)
                    model = Path(scratch) / "saved_models" / "before"  # trained by the older commit
                    seconds, samples[side] = textgen(
                        source, "sample", model, "--length", 20000, "--seed", 1, cwd=scratch
                    )
                    figures[side, "sampling"].append(seconds)
                    figures[side, "start-up"].append(textgen(source, "sample", model, "--length", 1, cwd=scratch)[0])
                    print(
                        f"round {round_number} {side}: training {rate:,.0f} chars/s, 20,000 characters sampled "
                        f"in {seconds:.2f} s, start-up {figures[side, 'start-up'][-1]:.3f} s",
                        flush=True,
                    )
        finally:
            subprocess.run(["git", "-C", REPOSITORY, "worktree", "remove", "--force", worktree], check=False)
    print("\nmedians, after / before (training: higher is better; sampling, start-up: lower is better)")
    for measure in ("training", "sampling", "start-up"):
        before, after = (statistics.median(figures[side, measure]) for side in sides)
        print(f"{measure:<10} before {before:>10,.3f}  after {after:>10,.3f}  ratio {after / before:.3f}")
    print("the 20,000 sampled characters are", "equal" if samples["before"] == samples["after"] else "DIFFERENT")


if __name__ == "__main__":
    main()
