"""Quality per wall-clock minute: held-out loss after `textgen train --time-budget`, against a PyTorch peer.

Runs the real command, as a user would, on tiny_shakespeare.txt (or --corpus)
with textgen's defaults (plus any extra options given), then `textgen evaluate`
on the file's last 10% — the split everyone uses for this corpus — with the RNN
state carried through it. With --peer (the default where PyTorch is installed)
it also runs benchmarks/pytorch_char_rnn.py for the same budget on the same
split, alternating with textgen, and prints textgen's loss / the peer's.

    python benchmarks/time_to_quality.py [--budgets 95s,10m] [--rounds 1] [--no-peer] [-- textgen train options]
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import describe_cpu

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"


def run(*arguments, cwd):
    return subprocess.run([sys.executable, *arguments], cwd=cwd, check=True, capture_output=True, text=True).stdout


def seconds(budget):
    unit = {"s": 1, "m": 60, "h": 3600}.get(budget[-1], 1)
    return float(budget.rstrip("smh")) * unit


def held_out_losses(budget, extra, corpus, peer, peer_cell):
    """{"textgen": (nats/char, steps), "pytorch": (nats/char, steps)} for one budget."""
    with tempfile.TemporaryDirectory() as scratch:
        text = corpus.read_text(encoding="utf-8")
        heldout = Path(scratch) / "heldout.txt"
        heldout.write_text(text[len(text) - round(len(text) * 0.1) :], encoding="utf-8")
        run("-m", "textgen", "train", str(corpus), "--name", "run", "--time-budget", budget, *extra, cwd=scratch)
        evaluate = ("-m", "textgen", "evaluate", "saved_models/run", str(heldout), "--format", "json")
        metrics = json.loads(run(*evaluate, cwd=scratch))
        report = json.loads(run("-m", "textgen", "info", "saved_models/run", "--format", "json", cwd=scratch))
        losses = {"textgen": (metrics["loss"], report["global_step"])}
        if peer:
            script = str(HERE / "pytorch_char_rnn.py")
            peer_result = json.loads(run(script, str(corpus), str(heldout), "--seconds", str(seconds(budget)),
                                         "--cell", peer_cell, cwd=scratch))  # fmt: skip
            losses["pytorch"] = (peer_result["loss"], peer_result["steps"])
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="95s,10m")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction,
                        default=importlib.util.find_spec("torch") is not None)  # fmt: skip
    parser.add_argument("--peer-cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="options passed on to textgen train")
    arguments = parser.parse_args()
    extra = [option for option in arguments.extra if option != "--"]
    corpus = arguments.corpus.resolve()  # textgen runs in a scratch directory
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(describe_cpu())
    print(f"textgen train {corpus.name} {' '.join(extra) or '(defaults)'}; textgen evaluate on the last 10%")
    if arguments.peer:
        print(f"peer: benchmarks/pytorch_char_rnn.py --cell {arguments.peer_cell} (2x256, seq 100, Adam 3e-3)")
    print(f"{'budget':>8} {'textgen':>9} {'steps':>7} {'pytorch':>9} {'steps':>7} {'ratio':>6}")
    for _ in range(arguments.rounds):
        for budget in arguments.budgets.split(","):
            losses = held_out_losses(budget, extra, corpus, arguments.peer, arguments.peer_cell)
            (ours, our_steps), (theirs, their_steps) = losses["textgen"], losses.get("pytorch", (float("nan"), 0))
            print(f"{budget:>8} {ours:>9.4f} {our_steps:>7,} {theirs:>9.4f} {their_steps:>7,} {ours / theirs:>6.3f}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
