"""Training throughput: textgen's own trainer against the same model in PyTorch, each in a process of its own.

For each cell x units it measures, every one in a fresh subprocess:
  - textgen through its own library entry point (textgen.train), two short
    epochs, the second one timed by textgen's own chars/s figure, at each
    --textgen precision:kernel (float32:onednn, bfloat16:onednn, bfloat16:keras);
  - Embedding -> 2-layer torch.nn.LSTM / GRU / RNN -> Linear with Adam and
    gradient clipping, in float32 and in bfloat16 (torch.autocast);
  - this machine's GEMM-bound ceiling for the model (benchmarks/ceiling.py).
The runs alternate round by round, and the table gives medians, each textgen
row's ratio to both PyTorch precisions and its fraction of the ceiling at its
precision. A peer never shares a process with textgen: loaded after textgen's
kernel (oneDNN's GNU OpenMP, OMP_WAIT_POLICY=PASSIVE), PyTorch ran 20-50%
slower; each PyTorch process checks that it starts clean (no textgen module,
no OMP_ or KMP_ setting inherited), and its rate is printed for every round.

PyTorch is a benchmark peer only (``pip install torch==2.13.0``), never a
textgen dependency.

    python benchmarks/train_throughput.py [--rounds 2] [--steps 30] [--cells lstm,gru] [--units 256]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from machine import describe_cpu  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"
SEQ_LENGTH, BATCH_SIZE, LAYERS = 100, 64, 2
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def textgen_rate(corpus_path, cell, units, precision, kernel, steps):
    """chars/s of textgen's second epoch (the first one traces and compiles)."""
    import textgen

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


def loaded_libraries():
    """The shared libraries this process has mapped (Linux), by file name."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return set()
    return {Path(line.split()[-1]).name for line in maps.splitlines() if ".so" in line}


def pytorch_rate(cell, units, precision, steps):
    """chars/s of the same architecture in PyTorch, after a few warm-up steps, in a process of its own."""
    from textgen.config import ModelConfig, TrainConfig  # plain Python: loads no native library

    inherited = sorted(name for name in os.environ if name.startswith(("OMP_", "KMP_", "GOMP_")))
    foreign = sorted(name for name in loaded_libraries() if name.startswith(("libdnnl", "libgomp", "libtensorflow")))
    assert not inherited and not foreign, f"the peer does not start clean: {inherited} {foreign}"
    import torch

    torch.set_num_threads(os.cpu_count())
    text = CORPUS.read_text(encoding="utf-8")
    vocabulary = {character: index for index, character in enumerate(sorted(set(text)))}
    ids = np.array([vocabulary[character] for character in text], np.int64)
    vocabulary_size = len(vocabulary)
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


def pipeline_rate(batches=300):
    from textgen.config import CorpusConfig, TokenizerConfig, TrainConfig
    from textgen.data.dataset import training_dataset
    from textgen.data.training_text import prepare_training_text

    text, _ = prepare_training_text(CorpusConfig(sources=(str(CORPUS),)), TokenizerConfig(), TrainConfig())
    dataset, _ = training_dataset(text.train_ids, seq_length=SEQ_LENGTH, batch_size=BATCH_SIZE, seed=0)
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH_SIZE * SEQ_LENGTH / (time.perf_counter() - started)


def ceiling_rates(cell, units):
    """{precision: GEMM-bound chars/s} of this machine (benchmarks/ceiling.py)."""
    from ceiling import ceilings

    return {precision: rate for precision, (rate, _) in ceilings(cell, units, LAYERS, BATCH_SIZE, SEQ_LENGTH).items()}


def measure(arguments):
    """One figure, in this (fresh) process: printed as one JSON line for the parent."""
    cell, units, steps = arguments.cell, arguments.units_one, arguments.steps
    if arguments.measure == "textgen":
        value = textgen_rate(CORPUS, cell, units, arguments.precision, arguments.kernel, steps)
    elif arguments.measure == "pytorch":
        value = pytorch_rate(cell, units, arguments.precision, steps)
    elif arguments.measure == "ceiling":
        value = ceiling_rates(cell, units)
    else:
        value = pipeline_rate()
    print(json.dumps(value))


def in_own_process(measure, **options):
    """Runs this script with --measure in a new process (its environment: this one's, less OMP_/KMP_ settings)."""
    command = [sys.executable, __file__, "--measure", measure]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("OMP_", "KMP_"))}
    run = subprocess.run(command, capture_output=True, text=True, env=environment)
    if run.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--cells", default="lstm,gru,simple_rnn")
    parser.add_argument("--units", default="256")
    parser.add_argument(
        "--textgen", default="float32:onednn,bfloat16:onednn,bfloat16:keras", help="textgen's rows, precision:kernel"
    )
    parser.add_argument("--pytorch", default="float32,bfloat16", help="PyTorch's precisions")
    # One measurement in this process (what the parent runs in each child).
    parser.add_argument("--measure", choices=("textgen", "pytorch", "ceiling", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--units-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--kernel", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        return measure(arguments)
    print(describe_cpu())
    models = [(cell, int(units)) for cell in arguments.cells.split(",") for units in arguments.units.split(",")]
    ours = [tuple(row.split(":")) for row in arguments.textgen.split(",")]
    peers = arguments.pytorch.split(",")
    rates = {}  # (model, side, precision, kernel) -> [chars/s per round]
    ceilings = {model: in_own_process("ceiling", cell=model[0], units_one=model[1]) for model in models}
    for _ in range(arguments.rounds):  # alternate, so drift on a shared machine hits every row
        for model in models:
            shape = dict(cell=model[0], units_one=model[1], steps=arguments.steps)
            for precision, kernel in ours:
                value = in_own_process("textgen", precision=precision, kernel=kernel, **shape)
                rates.setdefault((model, "textgen", precision, kernel), []).append(value)
            for precision in peers:
                value = in_own_process("pytorch", precision=precision, **shape)
                rates.setdefault((model, "pytorch", precision, ""), []).append(value)
    print(
        f"training throughput, {LAYERS} layers, seq {SEQ_LENGTH}, batch {BATCH_SIZE}, chars/s, each figure a "
        f"process of its own; median of {arguments.rounds} rounds of {arguments.steps} steps"
    )
    header = f"{'cell':<11} {'units':>5} {'side':<8} {'precision':<9} {'kernel':<7} {'chars/s':>9} {'each round':>20}"
    print(header + "".join(f" {'vs pt ' + peer:>13}" for peer in peers) + f" {'of ceiling':>10}")
    for (model, side, precision, kernel), values in rates.items():
        median = statistics.median(values)
        line = f"{model[0]:<11} {model[1]:>5} {side:<8} {precision:<9} {kernel or '-':<7} {median:>9,.0f}"
        line += f" {', '.join(f'{value:,.0f}' for value in values):>20}"
        for peer in peers:
            line += f" {median / statistics.median(rates[(model, 'pytorch', peer, '')]):>12.2f}x"
        ceiling = ceilings[model].get(precision)
        line += f" {median / ceiling:>10.2f}" if ceiling else f" {'-':>10}"
        print(line)
    for model in models:
        print(
            f"{model[0]} {model[1]} GEMM-bound ceiling (benchmarks/ceiling.py): "
            + ", ".join(f"{precision} {rate:,.0f}" for precision, rate in ceilings[model].items())
        )
    print(f"input pipeline alone: {in_own_process('pipeline'):,.0f} chars/s")


if __name__ == "__main__":
    main()
