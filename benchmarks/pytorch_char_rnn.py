"""The peer for benchmarks/time_to_quality.py: a plain PyTorch char-RNN script, trained for a time budget.

What a user would write by hand: read the text, build the character vocabulary,
hold out the last 10%, train Embedding 64 -> 2 x 256 LSTM (or GRU) -> Linear on
random windows of 100 characters, batch 64, Adam 3e-3 at a constant rate, the
gradients' global norm clipped to 1 — then score the held-out file as one stream
with the state carried through it, as `textgen evaluate` does (the first
character is context, not scored). Prints one JSON line: {"loss", "steps"}.

``--recipe textgen`` trains with textgen's own recipe instead: windows of 50,
Adam 6e-3, the rate cooled linearly to zero over the last 20% of the time
budget. ``--precision bfloat16`` runs the forward pass under torch.autocast.

PyTorch is a benchmark peer only (``pip install torch==2.13.0``), never a textgen dependency.

    python benchmarks/pytorch_char_rnn.py CORPUS HELDOUT --seconds 95 [--cell lstm|gru]
        [--recipe plain|textgen] [--precision float32|bfloat16]
"""

import argparse
import json
import os
import time

import numpy as np
import torch

BATCH_SIZE, UNITS, LAYERS, EMBEDDING = 64, 256, 2, 64
# name -> (window, Adam's peak learning rate, the fraction of the budget cooled down to zero)
RECIPES = {"plain": (100, 3e-3, 0.0), "textgen": (50, 6e-3, 0.2)}


class CharRNN(torch.nn.Module):
    def __init__(self, vocabulary_size, cell):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocabulary_size, EMBEDDING)
        recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = recurrent(EMBEDDING, UNITS, num_layers=LAYERS, batch_first=True)
        self.logits = torch.nn.Linear(UNITS, vocabulary_size)

    def forward(self, tokens, state=None):  # (batch, time) -> (batch, time, vocabulary), state
        hidden, state = self.rnn(self.embedding(tokens), state)
        return self.logits(hidden), state


def read(path):
    with open(path, encoding="utf-8-sig", newline="") as file:
        return file.read().replace("\r\n", "\n").replace("\r", "\n")


def train(model, train_ids, seconds, *, recipe, precision):
    seq_length, peak, cooldown = RECIPES[recipe]
    optimizer = torch.optim.Adam(model.parameters(), lr=peak)
    rng, steps, started = np.random.default_rng(0), 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        left = (seconds - elapsed) / seconds  # the fraction of the budget still ahead
        for group in optimizer.param_groups:
            group["lr"] = peak * min(1.0, left / cooldown) if cooldown else peak
        starts = rng.integers(0, len(train_ids) - seq_length - 1, BATCH_SIZE)
        windows = torch.from_numpy(np.stack([train_ids[start : start + seq_length + 1] for start in starts]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            logits, _ = model(windows[:, :-1])
        logits = logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        steps += 1
    return steps


@torch.no_grad()
def held_out_loss(model, ids, chunk=2000):
    """Mean nats per character of ids[1:], the state carried from chunk to chunk."""
    total, state = 0.0, None
    for start in range(0, len(ids) - 1, chunk):
        inputs = torch.from_numpy(ids[start : start + chunk][None, : len(ids) - 1 - start])
        targets = torch.from_numpy(ids[start + 1 : start + chunk + 1])
        logits, state = model(inputs, state)
        total += torch.nn.functional.cross_entropy(logits[0], targets, reduction="sum").item()
    return total / (len(ids) - 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("heldout")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="plain")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    arguments = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    text = read(arguments.corpus)
    vocabulary = sorted(set(text))
    index = {character: position for position, character in enumerate(vocabulary)}
    ids = np.array([index[character] for character in text], dtype=np.int64)
    model = CharRNN(len(vocabulary), arguments.cell)
    training_ids = ids[: len(ids) - round(len(ids) * 0.1)]
    steps = train(model, training_ids, arguments.seconds, recipe=arguments.recipe, precision=arguments.precision)
    heldout = np.array([index[character] for character in read(arguments.heldout)], dtype=np.int64)
    print(json.dumps({"loss": held_out_loss(model.eval(), heldout), "steps": steps}))


if __name__ == "__main__":
    main()
