"""GPU training throughput: textgen's Keras model on the JAX or PyTorch backend vs torch.nn.LSTM (cuDNN).

Trains the very model textgen trains (textgen.model.build_model and
compile_for_training, pure Keras) on whichever Keras backend KERAS_BACKEND names,
and, in the same process, the same architecture written directly in PyTorch
(Embedding -> 2-layer torch.nn.LSTM / GRU with cuDNN -> Linear, Adam, gradient
clipping, float16 through torch.autocast with a GradScaler). The two alternate;
the table gives the median chars/s of each and the ratio Keras / PyTorch.
TensorFlow is not needed: the data are random token ids (speed does not depend
on the text), fed as NumPy arrays.

    KERAS_BACKEND=jax python benchmarks/gpu_throughput.py [--rounds 3] [--steps 100] [--batch-sizes 64,512]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # textgen without installing it

import numpy as np  # noqa: E402

VOCABULARY, SEQ_LENGTH, LAYERS = 65, 100, 2
PRECISIONS = {"float32": "float32", "float16": "mixed_float16"}


def keras_rate(cell, units, precision, batch_size, steps, rounds):
    """chars/s of textgen's model under Keras's model.fit, one figure per round (after a compiling fit)."""

    from textgen.config import ModelConfig
    from textgen.model import build_model, compile_for_training

    model = build_model(ModelConfig(cell=cell, layers=LAYERS, units=units), VOCABULARY, precision=PRECISIONS[precision])
    compile_for_training(model, learning_rate=6e-3, clip_norm=1.0, precision=PRECISIONS[precision])
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCABULARY, (batch_size * steps, SEQ_LENGTH + 1), dtype=np.int32)
    x, y = tokens[:, :-1], tokens[:, 1:]
    model.fit(x[: batch_size * 5], y[: batch_size * 5], batch_size=batch_size, epochs=1, verbose=0)  # compile
    for _ in range(rounds):
        started = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        yield batch_size * steps * SEQ_LENGTH / (time.perf_counter() - started)


def pytorch_rate(cell, units, precision, batch_size, steps, rounds):
    """chars/s of the same architecture written in PyTorch (cuDNN RNN), one figure per round."""
    import torch

    device = torch.device("cuda")
    recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]

    class Network(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCABULARY, 64)
            self.rnn = recurrent(64, units, num_layers=LAYERS, batch_first=True)
            self.logits = torch.nn.Linear(units, VOCABULARY)

        def forward(self, tokens):
            hidden, _ = self.rnn(self.embedding(tokens))  # (batch, time, units)
            return self.logits(hidden).float()  # (batch, time, vocabulary)

    network = Network().to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=6e-3)
    half = precision == "float16"
    scaler = torch.amp.GradScaler("cuda", enabled=half)
    generator = torch.Generator(device=device).manual_seed(0)
    batches = [
        torch.randint(0, VOCABULARY, (batch_size, SEQ_LENGTH + 1), device=device, generator=generator) for _ in range(8)
    ]

    def step(batch):
        with torch.autocast("cuda", dtype=torch.float16, enabled=half):
            logits = network(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCABULARY), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        return loss

    for index in range(5):
        step(batches[index % len(batches)])
    torch.cuda.synchronize()
    for _ in range(rounds):
        started = time.perf_counter()
        for index in range(steps):
            loss = step(batches[index % len(batches)])
        loss.item()  # waits for the GPU
        yield batch_size * steps * SEQ_LENGTH / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--units", default="256,512")
    parser.add_argument("--precisions", default="float32,float16")
    parser.add_argument("--batch-sizes", default="64")
    arguments = parser.parse_args()
    import keras
    import torch

    print(
        f"Keras {keras.__version__} on {keras.backend.backend()} vs PyTorch {torch.__version__}, "
        f"{torch.cuda.get_device_name()}; {LAYERS} layers, sequence {SEQ_LENGTH}, chars/s, "
        f"medians of {arguments.rounds} alternating rounds of {arguments.steps} steps"
    )
    print(f"{'cell':>5} {'units':>5} {'precision':>9} {'batch':>5} {'keras':>12} {'pytorch':>12} {'ratio':>6}")
    for cell in arguments.cells.split(","):
        for units in map(int, arguments.units.split(",")):
            for precision in arguments.precisions.split(","):
                for batch_size in map(int, arguments.batch_sizes.split(",")):
                    settings = (cell, units, precision, batch_size, arguments.steps, arguments.rounds)
                    keras_rounds, pytorch_rounds = keras_rate(*settings), pytorch_rate(*settings)
                    keras_rates, pytorch_rates = [], []
                    try:
                        # Alternate: one Keras round, one PyTorch round, and so on.
                        for _ in range(arguments.rounds):
                            keras_rates.append(next(keras_rounds))
                            pytorch_rates.append(next(pytorch_rounds))
                    except Exception as error:  # e.g. a backend without this kernel: say so, go on
                        message = str(error).strip().splitlines()[0][:80]
                        print(f"{cell:>5} {units:>5} {precision:>9} {batch_size:>5} failed: {message}", flush=True)
                        continue
                    keras_rounds.close()
                    ours, theirs = statistics.median(keras_rates), statistics.median(pytorch_rates)
                    print(
                        f"{cell:>5} {units:>5} {precision:>9} {batch_size:>5} {ours:>12,.0f} {theirs:>12,.0f} "
                        f"{ours / theirs:>5.2f}x",
                        flush=True,
                    )


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory for PyTorch too
    main()
