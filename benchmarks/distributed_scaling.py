"""One device against two under tf.distribute: throughput, and the held-out loss after the same global steps.

Each configuration trains the same model on the same text, for the same
number of global steps, at the same global batch (so two replicas train on
half a batch each), as a whole `textgen train` process:

    one (onednn)      --strategy one: the fused CPU kernel, what a one-device run does
    one (keras)       --strategy one --kernel keras: Keras's layers, the fair base for mirrored
    mirrored 2 CPUs   --strategy mirrored --devices CPU:0,CPU:1 (two logical CPU devices; Keras's layers)
    2 workers         --strategy multi-worker: two processes on 127.0.0.1, TF_CONFIG each (the fused kernel)

The configurations alternate, round after round; the table gives medians and
ratios to "one (onednn)". On a 2-core CPU the point is correctness (the same
held-out loss) and overhead, not speed: both replicas share the same two cores.

    python benchmarks/distributed_scaling.py [--rounds 2] [--epochs 1] [--units 128]
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_cpu

SHAKESPEARE = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"
CONFIGURATIONS = {
    "one (onednn)": ["--strategy", "one"],
    "one (keras)": ["--strategy", "one", "--kernel", "keras"],
    "mirrored 2 CPUs": ["--strategy", "mirrored", "--devices", "CPU:0,CPU:1"],
    "2 workers": ["--strategy", "multi-worker"],
}


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


def run(name, options, corpus, common, workdir):
    """(seconds of training, global steps, held-out loss) of one configuration, a fresh model each time."""
    command = [
        sys.executable,
        "-m",
        "textgen",
        "train",
        str(corpus),
        "--name",
        "bench",
        "--overwrite",
        *common,
        *options,
    ]
    environments = [{**os.environ, "TF_CONFIG": ""}]
    if name == "2 workers":
        ports = free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        environments = [
            {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            for index in range(2)
        ]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for env in environments
    ]
    outputs = [process.communicate() for process in processes]
    elapsed = time.perf_counter() - started
    for process, (_, error) in zip(processes, outputs):
        if process.returncode != 0:
            raise SystemExit(f"{name} failed: {error.strip().splitlines()[-1:]}")
    chief_output = outputs[0][0]
    records = json.loads((Path(workdir) / "saved_models" / "bench" / "metrics.json").read_text())
    speeds = [int(match.replace(",", "")) for match in re.findall(r"([\d,]+) chars/s", chief_output)]
    return elapsed, records[-1]["global_step"], records[-1]["val_loss"], speeds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="the last one's speed is reported (the first traces)")
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--characters", type=int, default=400_000, help="of tiny_shakespeare, from its start")
    arguments = parser.parse_args()
    print(describe_cpu(), flush=True)
    common = [
        "--units",
        str(arguments.units),
        "--layers",
        "2",
        "--batch-size",
        "64",
        "--seq-length",
        "50",
        "--epochs",
        str(arguments.epochs),
        "--precision",
        "float32",
        "--seed",
        "1",
    ]
    results = {name: [] for name in CONFIGURATIONS}
    with tempfile.TemporaryDirectory(prefix="textgen-distributed-") as scratch:
        corpus = Path(scratch) / "shakespeare_part.txt"
        corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[: arguments.characters], encoding="utf-8")
        os.environ["TEXTGEN_CACHE"] = str(Path(scratch) / "cache")
        for round_number in range(arguments.rounds):
            for name, options in CONFIGURATIONS.items():
                elapsed, steps, loss, speeds = run(name, options, corpus, common, scratch)
                results[name].append((elapsed, steps, loss, speeds))
                print(
                    f"round {round_number + 1}: {name:16} {elapsed:6.1f} s for {steps} global steps, "
                    f"held-out loss {loss:.4f}, epoch chars/s {speeds}",
                    flush=True,
                )
    characters_per_step = 64 * 50
    print("\nmedians over rounds; steps/s and chars/s of the last epoch (global steps: 64 windows of 50 characters)")
    print("configuration      process s  global steps  steps/s   chars/s  ratio  held-out loss (each round)")
    base = statistics.median(speeds[-1] for *_, speeds in results["one (onednn)"])
    for name, runs in results.items():
        elapsed = statistics.median(seconds for seconds, *_ in runs)
        speed = statistics.median(speeds[-1] for *_, speeds in runs)
        losses = ", ".join(f"{loss:.4f}" for _, _, loss, _ in runs)
        print(
            f"{name:18} {elapsed:9.1f} {runs[0][1]:13} {speed / characters_per_step:8.2f} {speed:9,} "
            f"{speed / base:6.2f}  {losses}"
        )


if __name__ == "__main__":
    main()
