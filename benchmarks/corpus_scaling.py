"""How textgen scales with the corpus: token-store build speed, reuse, training memory and speed.

Synthetic char-level corpora of the sizes asked for are written to a temporary
directory (tiny_shakespeare's paragraphs, shuffled and repeated: nothing is
downloaded or committed). For each size it reports

    build     seconds and MB/s to stream the text into a fresh token store
    reuse     seconds to open the same store again (a second run on the corpus)
    train     peak RSS and first-epoch chars/s of a whole `textgen train CORPUS
              --time-budget 30s` process (the store already built)

    python benchmarks/corpus_scaling.py [--sizes 10,100,1000] [--budget 30s]

Sizes are in MB. The word level still reads its corpus into memory and is not measured here.
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
PEAK_RSS = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=sys.stderr); " \
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # fmt: skip


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


def build_and_reuse(corpus):
    from textgen.config import CorpusConfig, TokenizerConfig
    from textgen.data.corpus import resolve_sources
    from textgen.data.token_store import open_token_store

    config = CorpusConfig(sources=(str(corpus),))
    timings = []
    for _ in ("build", "reuse"):
        started = time.perf_counter()
        open_token_store(config, TokenizerConfig(), resolved=resolve_sources(config.sources))
        timings.append(time.perf_counter() - started)
    return timings


def train(corpus, budget, workdir):
    command = [sys.executable, "-m", "textgen", "train", str(corpus), "--name", "scaling", "--overwrite",
               "--time-budget", budget]  # fmt: skip
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"training failed: {result.stderr.strip().splitlines()[-1:]}")
    peak_kb = int(result.stdout.strip().splitlines()[-1])
    speed = re.search(r"epoch 1: .* ([\d,]+) chars/s", result.stderr)
    return peak_kb / 1024, int(speed.group(1).replace(",", "")) if speed else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000", help="corpus sizes in MB, comma-separated")
    parser.add_argument("--budget", default="30s", help="training time budget per run")
    arguments = parser.parse_args()
    print(describe_cpu(), flush=True)
    print("size    build s   build MB/s  reuse s  train peak RSS  first-epoch chars/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="textgen-scaling-") as scratch:
        scratch = Path(scratch)
        os.environ["TEXTGEN_CACHE"] = str(scratch / "cache")  # fresh stores, removed at the end
        for megabytes in (int(size) for size in arguments.sizes.split(",")):
            corpus = scratch / f"corpus_{megabytes}mb.txt"
            make_corpus(corpus, megabytes)
            build, reuse = build_and_reuse(corpus)
            peak_mb, speed = train(corpus, arguments.budget, scratch)
            print(f"{megabytes:>5} MB {build:8.2f} {megabytes / build:11.1f} {reuse:8.3f} {peak_mb:11,.0f} MB "
                  f"{speed or 0:>14,}", flush=True)  # fmt: skip
            corpus.unlink()


if __name__ == "__main__":
    main()
