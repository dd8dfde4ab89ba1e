"""Training throughput: textgen's own trainer against the same model in PyTorch, same machine, same run.

For each cell x units x precision row it trains (a) textgen through its own
library entry point (textgen.train), two short epochs, the second
one timed by textgen's own chars/s figure, and (b) Embedding -> 2-layer
torch.nn.LSTM / GRU / RNN -> Linear with Adam and gradient clipping, bfloat16
through torch.autocast; the two alternate, and the table gives medians and the
ratio textgen / PyTorch. It also reports the input pipeline's own rate.

PyTorch is a benchmark peer only (``pip install torch==2.13.0``), never a
textgen dependency.

    python benchmarks/train_throughput.py [--rounds 3] [--steps 30] [--cells lstm,gru] [--units 256]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from machine import describe_cpu  # noqa: E402

import textgen  # noqa: E402
from textgen.config import CorpusConfig, ModelConfig, TokenizerConfig, TrainConfig  # noqa: E402
from textgen.data.training_text import prepare_training_text  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"
SEQ_LENGTH, BATCH_SIZE, LAYERS = 100, 64, 2
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def textgen_rate(corpus_path, cell, units, precision, kernel, steps):
    """chars/s of textgen's second epoch (the first one traces and compiles)."""
    # A corpus slice holding `steps` batches per epoch, plus a small validation tail.
    characters = steps * BATCH_SIZE * SEQ_LENGTH + SEQ_LENGTH
    with tempfile.TemporaryDirectory() as scratch:
        sliced = Path(scratch) / "slice.txt"
        sliced.write_text(corpus_path.read_text(encoding="utf-8")[: int(characters / 0.9)], encoding="utf-8")
        result = textgen.train(
            sliced,
            root=Path(scratch),
            echo=lambda line: None,
            cell=cell,
            layers=LAYERS,
            units=units,
            seq_length=SEQ_LENGTH,
            batch_size=BATCH_SIZE,
            epochs=2,
            precision=PRECISIONS[precision],
            kernel=kernel,
        )
    return result.epochs[-1]["characters_per_second"]


def pytorch_rate(ids, vocabulary_size, cell, units, precision, kernel, steps):
    """chars/s of the same architecture in PyTorch, after a few warm-up steps."""
    import torch

    torch.manual_seed(0)
    recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}[cell]

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocabulary_size, ModelConfig.embedding_dim)
            self.rnn = recurrent(ModelConfig.embedding_dim, units, num_layers=LAYERS, batch_first=True)
            self.logits = torch.nn.Linear(units, vocabulary_size)

        def forward(self, tokens):
            hidden, _ = self.rnn(self.embedding(tokens))
            return self.logits(hidden)

    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainConfig.learning_rate)
    rng = np.random.default_rng(0)

    def batch():
        starts = rng.integers(0, len(ids) - SEQ_LENGTH - 1, BATCH_SIZE)
        windows = np.stack([ids[start : start + SEQ_LENGTH + 1] for start in starts]).astype(np.int64)
        return torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])

    def step():
        inputs, targets = batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocabulary_size), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TrainConfig.clip_norm)
        optimizer.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH_SIZE * SEQ_LENGTH / (time.perf_counter() - started)


def pipeline_rate(ids, batches=300):
    from textgen.data.dataset import training_dataset

    dataset, _ = training_dataset(ids, seq_length=SEQ_LENGTH, batch_size=BATCH_SIZE, seed=0)
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH_SIZE * SEQ_LENGTH / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--cells", default="simple_rnn,lstm,gru")
    parser.add_argument("--units", default="256,512")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--kernels", default="onednn,keras", help="textgen's --kernel for each row")
    arguments = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count())
    text, _ = prepare_training_text(CorpusConfig(sources=(str(CORPUS),)), TokenizerConfig(), TrainConfig())
    print(describe_cpu())
    rows = [
        (cell, int(units), precision, kernel)
        for cell in arguments.cells.split(",")
        for units in arguments.units.split(",")
        for precision in arguments.precisions.split(",")
        for kernel in arguments.kernels.split(",")
    ]
    rates = {row: {"textgen": [], "pytorch": []} for row in rows}
    for _ in range(arguments.rounds):  # alternate, so drift on a shared machine hits both
        for row in rows:
            rates[row]["textgen"].append(textgen_rate(CORPUS, *row, arguments.steps))
            rates[row]["pytorch"].append(
                pytorch_rate(text.train_ids, text.tokenizer.vocabulary_size, *row, arguments.steps)
            )
    print(
        f"training throughput, {LAYERS} layers, seq {SEQ_LENGTH}, batch {BATCH_SIZE}, chars/s, "
        f"median of {arguments.rounds} rounds of {arguments.steps} steps"
    )
    print(f"{'cell':<11} {'units':>5} {'precision':<9} {'kernel':<7} {'textgen':>9} {'pytorch':>9} {'ratio':>6}")
    for row in rows:
        ours, theirs = (statistics.median(rates[row][name]) for name in ("textgen", "pytorch"))
        print(f"{row[0]:<11} {row[1]:>5} {row[2]:<9} {row[3]:<7} {ours:>9,.0f} {theirs:>9,.0f} {ours / theirs:>5.2f}x")
    print(f"input pipeline alone: {pipeline_rate(text.train_ids):,.0f} chars/s")


if __name__ == "__main__":
    main()
