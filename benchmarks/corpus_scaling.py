"""How textgen scales with the corpus: token-store build speed, reuse, training memory and speed.

Synthetic corpora of the sizes asked for are written to a temporary directory
(tiny_shakespeare's paragraphs, shuffled and repeated: nothing is downloaded or
committed). For each size and level (char, word) it reports

    build     seconds and MB/s to stream the text into a fresh token store
    reuse     seconds to open the same store again (a second run on the corpus)
    windows/s the training pipeline alone (tf.data batches from the store, no model)
    train     peak RSS and first-epoch chars/s of a whole `textgen train CORPUS
              --time-budget 30s` process (the store already built)

Then, on the smallest corpus, training steps/s of the default model fed from
the token store (ids read from disk by position) against the same ids held in
memory (a NumPy array), alternating, in this process.

    python benchmarks/corpus_scaling.py [--sizes 10,100,1000] [--levels char,word] [--budget 30s]

Sizes are in MB.
"""

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_cpu

SHAKESPEARE = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"
# Runs a command and prints its peak resident memory (KB), as the kernel counted it.
PEAK_RSS = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=sys.stderr); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def make_corpus(path, megabytes, seed=0):
    """About ``megabytes`` MB of shuffled, repeated tiny_shakespeare paragraphs at ``path``."""
    paragraphs = SHAKESPEARE.read_text(encoding="utf-8").split("\n\n")
    rng = random.Random(seed)
    target = megabytes * 1_000_000
    with open(path, "w", encoding="utf-8") as handle:
        written = 0
        while written < target:
            rng.shuffle(paragraphs)
            block = "\n\n".join(paragraphs) + "\n\n"
            handle.write(block[: target - written])
            written += min(len(block), target - written)


def build_and_reuse(corpus, level):
    """(build seconds, reuse seconds, the store's ids)."""
    from textgen.config import CorpusConfig, TokenizerConfig
    from textgen.data.corpus import resolve_sources
    from textgen.data.token_store import open_token_store

    config = CorpusConfig(sources=(str(corpus),))
    timings = []
    for _ in ("build", "reuse"):
        started = time.perf_counter()
        _, _, ids = open_token_store(config, TokenizerConfig(level=level), resolved=resolve_sources(config.sources))
        timings.append(time.perf_counter() - started)
    return timings[0], timings[1], ids


def pipeline_windows_per_second(ids, batches=2000):
    """Windows per second out of training_dataset with nothing consuming them but a loop."""
    from pipeline_rate import characters_per_second  # its rate per batch unit: here, windows

    from textgen.data.dataset import training_dataset

    dataset, _ = training_dataset(ids, seq_length=50, batch_size=64, seed=0)
    return characters_per_second(dataset, batches, 64)


def store_against_memory(ids, rounds=3, steps=60):
    """Training steps/s of the default model fed from the store and from the same ids in memory, alternating."""
    import keras
    import numpy as np

    from textgen.config import ModelConfig
    from textgen.data.dataset import training_dataset
    from textgen.hardware import cpu_threads
    from textgen.hardware.fused_rnn import FUSED_LAYERS
    from textgen.hardware.onednn import onednn_status
    from textgen.model import build_model, compile_for_training

    fused = onednn_status()[0] is not None
    cpu_threads.configure_for_training(fused_kernel=fused)
    vocabulary = int(np.asarray(ids[: 1 << 20]).max()) + 1
    config = ModelConfig()
    model = build_model(config, vocabulary, layer_class=FUSED_LAYERS[config.cell] if fused else None)
    compile_for_training(model, learning_rate=0.006, clip_norm=1.0, precision="float32")
    sources = {"token store": ids, "in memory": np.asarray(ids).astype(np.int32)}
    rates = {name: [] for name in sources}
    for _ in range(rounds):
        for name, source in sources.items():
            dataset, _ = training_dataset(source, seq_length=50, batch_size=64, seed=0)
            model.fit(dataset, steps_per_epoch=5, epochs=1, verbose=0)  # warm: the graph is traced
            started = time.perf_counter()
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            rates[name].append(steps / (time.perf_counter() - started))
    keras.backend.clear_session()
    return {name: sorted(values)[len(values) // 2] for name, values in rates.items()}


def train(corpus, level, budget, workdir):
    command = [
        sys.executable,
        "-m",
        "textgen",
        "train",
        str(corpus),
        "--name",
        "scaling",
        "--overwrite",
        "--level",
        level,
        "--time-budget",
        budget,
    ]
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"training failed: {result.stderr.strip().splitlines()[-1:]}")
    peak_kb = int(result.stdout.strip().splitlines()[-1])
    speed = re.search(r"epoch 1: .* ([\d,]+) chars/s", result.stderr)
    return peak_kb / 1024, int(speed.group(1).replace(",", "")) if speed else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000", help="corpus sizes in MB, comma-separated")
    parser.add_argument("--levels", default="char,word", help="tokenizer levels, comma-separated")
    parser.add_argument("--budget", default="30s", help="training time budget per run")
    parser.add_argument("--no-steps", action="store_true", help="skip the store-against-memory steps/s comparison")
    arguments = parser.parse_args()
    print(describe_cpu(), flush=True)
    print("size    level  build s  build MB/s  reuse s  windows/s  train peak RSS  first-epoch chars/s", flush=True)
    sizes = [int(size) for size in arguments.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="textgen-scaling-") as scratch:
        scratch = Path(scratch)
        os.environ["TEXTGEN_CACHE"] = str(scratch / "cache")  # fresh stores, removed at the end
        smallest_ids = None
        for megabytes in sizes:
            corpus = scratch / f"corpus_{megabytes}mb.txt"
            make_corpus(corpus, megabytes)
            for level in arguments.levels.split(","):
                build, reuse, ids = build_and_reuse(corpus, level)
                windows = pipeline_windows_per_second(ids)
                if megabytes == min(sizes) and level == "char":
                    smallest_ids = ids
                peak_mb, speed = train(corpus, level, arguments.budget, scratch)
                print(
                    f"{megabytes:>5} MB {level:>5} {build:8.2f} {megabytes / build:11.1f} {reuse:8.3f} "
                    f"{windows:10,.0f} {peak_mb:11,.0f} MB {speed or 0:>14,}",
                    flush=True,
                )
            corpus.unlink()
        if smallest_ids is not None and not arguments.no_steps:
            rates = store_against_memory(smallest_ids)
            store, memory = rates["token store"], rates["in memory"]
            print(
                f"\nsteps/s on the {min(sizes)} MB char corpus (default model, medians of 3 alternating rounds): "
                f"token store {store:.2f}, in memory {memory:.2f}, ratio {store / memory:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
