"""Quality per wall-clock minute: held-out loss after `textgen train --time-budget`, against a PyTorch peer.

Runs the real command, as a user would, on tiny_shakespeare.txt (or --corpus)
with textgen's defaults (plus any extra options given), then `textgen evaluate`
on the file's last 10% — the split everyone uses for this corpus — with the RNN
state carried through it. With --peers (by default, where PyTorch is installed:
the plain script in float32, and textgen's own recipe in bfloat16 where the CPU
has it natively, else float32) it also runs benchmarks/pytorch_char_rnn.py for
the same budget on the same split, each in its own process, alternating with
textgen, and prints textgen's loss / each peer's.

    python benchmarks/time_to_quality.py [--budgets 95s,10m] [--rounds 1] [--peers plain:float32,textgen:bfloat16]
        [--no-peer] [-- textgen train options]
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

from textgen.hardware.precision import cpu_flags, has_native_bfloat16

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"


def run(*arguments, cwd):
    return subprocess.run([sys.executable, *arguments], cwd=cwd, check=True, capture_output=True, text=True).stdout


def seconds(budget):
    unit = {"s": 1, "m": 60, "h": 3600}.get(budget[-1], 1)
    return float(budget.rstrip("smh")) * unit


def held_out_losses(budget, extra, corpus, peers, peer_cell):
    """{"textgen": (nats/char, steps), peer: (nats/char, steps)...} for one budget."""
    with tempfile.TemporaryDirectory() as scratch:
        text = corpus.read_text(encoding="utf-8")
        heldout = Path(scratch) / "heldout.txt"
        heldout.write_text(text[len(text) - round(len(text) * 0.1) :], encoding="utf-8")
        run("-m", "textgen", "train", str(corpus), "--name", "run", "--time-budget", budget, *extra, cwd=scratch)
        evaluate = ("-m", "textgen", "evaluate", "saved_models/run", str(heldout), "--format", "json")
        metrics = json.loads(run(*evaluate, cwd=scratch))
        report = json.loads(run("-m", "textgen", "info", "saved_models/run", "--format", "json", cwd=scratch))
        losses = {"textgen": (metrics["loss"], report["global_step"])}
        for peer in peers:
            recipe, precision = peer.split(":")
            script = str(HERE / "pytorch_char_rnn.py")
            peer_result = json.loads(
                run(
                    script,
                    str(corpus),
                    str(heldout),
                    "--seconds",
                    str(seconds(budget)),
                    "--cell",
                    peer_cell,
                    "--recipe",
                    recipe,
                    "--precision",
                    precision,
                    cwd=scratch,
                )
            )
            losses[peer] = (peer_result["loss"], peer_result["steps"])
    return losses


def default_peers():
    """The plain script in float32, and textgen's recipe in PyTorch's fastest precision on this CPU."""
    best = "bfloat16" if has_native_bfloat16(cpu_flags()) else "float32"  # autocast: 1.5-2x where native
    return f"plain:float32,textgen:{best}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="95s,10m")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--peer", action=argparse.BooleanOptionalAction, default=importlib.util.find_spec("torch") is not None
    )
    parser.add_argument("--peers", default=default_peers(), help="recipe:precision of each PyTorch peer")
    parser.add_argument("--peer-cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="options passed on to textgen train")
    arguments = parser.parse_args()
    extra = [option for option in arguments.extra if option != "--"]
    corpus = arguments.corpus.resolve()  # textgen runs in a scratch directory
    peers = arguments.peers.split(",") if arguments.peer else []
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(describe_cpu())
    print(f"textgen train {corpus.name} {' '.join(extra) or '(defaults)'}; textgen evaluate on the last 10%")
    for peer in peers:
        print(
            f"peer {peer}: benchmarks/pytorch_char_rnn.py --cell {arguments.peer_cell} --recipe "
            f"{peer.replace(':', ' --precision ')}"
        )
    header = f"{'budget':>8} {'textgen':>9} {'steps':>7}"
    print(header + "".join(f" {peer:>17} {'steps':>7} {'ratio':>6}" for peer in peers))
    for _ in range(arguments.rounds):
        for budget in arguments.budgets.split(","):
            losses = held_out_losses(budget, extra, corpus, peers, arguments.peer_cell)
            ours, our_steps = losses["textgen"]
            line = f"{budget:>8} {ours:>9.4f} {our_steps:>7,}"
            for peer in peers:
                theirs, their_steps = losses[peer]
                line += f" {theirs:>17.4f} {their_steps:>7,} {ours / theirs:>6.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
