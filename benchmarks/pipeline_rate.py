"""How fast the input pipeline alone makes batches, with no model attached.

Runs textgen's ``training_dataset`` and, as a baseline, the TensorFlow
text-generation tutorial's pipeline (``from_tensor_slices -> batch(seq+1) ->
map(split) -> shuffle -> batch``), alternating them, and prints characters/s
for each and the ratio. The pipeline must be far faster than training
(tens of thousands of chars/s on 2 cores) so it is never the bottleneck.

    python benchmarks/pipeline_rate.py [CORPUS] [--rounds 3] [--batches 300]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from textgen.config import CorpusConfig, TokenizerConfig, TrainConfig  # noqa: E402
from textgen.data.dataset import training_dataset  # noqa: E402
from textgen.data.training_text import prepare_training_text  # noqa: E402

DEFAULT_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora", "tiny_shakespeare.txt")


def tutorial_dataset(ids, seq_length, batch_size):
    """The TensorFlow tutorial's pipeline: fixed windows, one element per token at the start."""

    def split(chunk):
        return chunk[:-1], chunk[1:]

    return (
        tf.data.Dataset.from_tensor_slices(ids)
        .batch(seq_length + 1, drop_remainder=True)
        .map(split)
        .shuffle(10_000)
        .batch(batch_size, drop_remainder=True)
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )


def characters_per_second(dataset, batches, characters_per_batch):
    iterator = iter(dataset)
    next(iterator)  # start-up (buffers, shuffles) is not the steady rate
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * characters_per_batch / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=300)
    arguments = parser.parse_args()

    train = TrainConfig()
    text, train = prepare_training_text(CorpusConfig(sources=(arguments.corpus,)), TokenizerConfig(), train)
    per_batch = train.batch_size * train.seq_length
    ours, _ = training_dataset(text.train_ids, seq_length=train.seq_length, batch_size=train.batch_size, seed=0)
    tutorial = tutorial_dataset(text.train_ids, train.seq_length, train.batch_size)
    rates = {"textgen": [], "tutorial": []}
    for _ in range(arguments.rounds):  # alternate, so drift on a shared machine hits both
        rates["textgen"].append(characters_per_second(ours, arguments.batches, per_batch))
        rates["tutorial"].append(characters_per_second(tutorial, arguments.batches, per_batch))
    print(
        f"input pipeline alone, batch {train.batch_size} x seq {train.seq_length}, "
        f"median of {arguments.rounds} rounds of {arguments.batches} batches"
    )
    print(f"{'pipeline':<10} {'chars/s':>14}")
    for name, values in rates.items():
        print(f"{name:<10} {statistics.median(values):>14,.0f}")
    ratio = statistics.median(rates["textgen"]) / statistics.median(rates["tutorial"])
    print(f"textgen / tutorial: {ratio:.2f}x")


if __name__ == "__main__":
    main()
