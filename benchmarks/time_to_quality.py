"""Quality per wall-clock minute: held-out loss after `textgen train --time-budget`.

Runs the real command, as a user would, on tiny_shakespeare.txt with textgen's
defaults (plus any extra options given), then `textgen evaluate` on the file's
last 10% — the split everyone uses for this corpus — with the RNN state carried
through it. Prints nats/char for each budget.

    python benchmarks/time_to_quality.py [--budgets 95s,10m] [-- extra textgen train options]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"


def textgen(*arguments, cwd):
    return subprocess.run(
        [sys.executable, "-m", "textgen", *arguments], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def held_out_loss(budget, extra, corpus):
    with tempfile.TemporaryDirectory() as scratch:
        text = corpus.read_text(encoding="utf-8")
        heldout = Path(scratch) / "heldout.txt"
        heldout.write_text(text[len(text) - round(len(text) * 0.1) :], encoding="utf-8")
        textgen("train", str(corpus), "--name", "run", "--time-budget", budget, *extra, cwd=scratch)
        metrics = json.loads(textgen("evaluate", "saved_models/run", str(heldout), "--format", "json", cwd=scratch))
        report = json.loads(textgen("info", "saved_models/run", "--format", "json", cwd=scratch))
    return metrics["loss"], report["global_step"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="95s,10m")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="options passed on to textgen train")
    arguments = parser.parse_args()
    extra = [option for option in arguments.extra if option != "--"]
    corpus = arguments.corpus.resolve()  # textgen runs in a scratch directory
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"textgen train {corpus.name} {' '.join(extra) or '(defaults)'}; textgen evaluate on the last 10%")
    print(f"{'budget':>8} {'nats/char':>10} {'steps':>7}")
    for budget in arguments.budgets.split(","):
        loss, steps = held_out_loss(budget, extra, corpus)
        print(f"{budget:>8} {loss:>10.4f} {steps:>7,}")


if __name__ == "__main__":
    main()
