"""The peer for benchmarks/whole_epoch.py: one epoch of a char-level LSTM in a plain PyTorch script.

What a user would write by hand for the same job as
``textgen train CORPUS --cell lstm --layers 2 --units 256 --seq-length 100
--batch-size 64 --epochs 1``: read the text, build the character vocabulary,
hold out the last 10%, train one pass over shuffled non-overlapping windows
of the rest (Adam, gradient norm clipped to 1), and save the weights. No
validation, logging or backups: the leanest script, so the fairest peer.

PyTorch is a benchmark peer only (``pip install torch==2.13.0``).

    python benchmarks/pytorch_epoch.py CORPUS OUTPUT.pt [--precision float32|bfloat16]
"""

import argparse
import os

import numpy as np
import torch

SEQ_LENGTH, BATCH_SIZE, UNITS, LAYERS, EMBEDDING = 100, 64, 256, 2, 64


class CharLSTM(torch.nn.Module):
    def __init__(self, vocabulary_size):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocabulary_size, EMBEDDING)
        self.lstm = torch.nn.LSTM(EMBEDDING, UNITS, num_layers=LAYERS, batch_first=True)
        self.logits = torch.nn.Linear(UNITS, vocabulary_size)

    def forward(self, tokens):  # (batch, time) -> (batch, time, vocabulary)
        hidden, _ = self.lstm(self.embedding(tokens))
        return self.logits(hidden)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("output")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    arguments = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)

    with open(arguments.corpus, encoding="utf-8-sig", newline="") as file:
        text = file.read().replace("\r\n", "\n").replace("\r", "\n")
    vocabulary = sorted(set(text))
    index = {character: position for position, character in enumerate(vocabulary)}
    ids = np.array([index[character] for character in text], dtype=np.int64)
    train_ids = ids[: len(ids) - round(len(ids) * 0.1)]

    starts = np.arange(0, len(train_ids) - SEQ_LENGTH, SEQ_LENGTH)
    np.random.default_rng(0).shuffle(starts)
    model = CharLSTM(len(vocabulary))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.006)
    for batch in range(len(starts) // BATCH_SIZE):
        windows = np.stack(
            [
                train_ids[start : start + SEQ_LENGTH + 1]
                for start in starts[batch * BATCH_SIZE : (batch + 1) * BATCH_SIZE]
            ]
        )
        inputs, targets = torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=arguments.precision == "bfloat16"):
            logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, len(vocabulary)), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    torch.save({"state_dict": model.state_dict(), "vocabulary": vocabulary}, arguments.output)
    print(f"{len(starts) // BATCH_SIZE} steps, last loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
