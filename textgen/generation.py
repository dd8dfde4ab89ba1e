"""The Python API for writing text: a saved model + an engine + a strategy.

    generator = textgen.load("saved_models/tiny_shakespeare")
    for piece in generator.stream("ROMEO:", length=200, temperature=0.8, seed=1):
        print(piece, end="")

The RNN state is carried from step to step: each new token costs one step of
the network, never a re-run over a window of previous text.
"""

from pathlib import Path

import numpy as np

from textgen import artifacts, sampling
from textgen.config import SamplingConfig
from textgen.engine_numpy import NumpyEngine
from textgen.errors import TextgenError

# What an empty prompt is primed with, if the vocabulary has it: most texts
# are made of lines, so a newline is a natural "start of something".
DEFAULT_PRIMER = "\n"


class Generator:
    """Writes text from one saved model."""

    def __init__(self, saved_model, engine):
        self.saved_model = saved_model
        self.tokenizer = saved_model.tokenizer
        self.engine = engine
        if engine.vocabulary_size != self.tokenizer.vocabulary_size:
            raise TextgenError(
                f"{saved_model.directory}: model has {engine.vocabulary_size} outputs but the tokenizer "
                f"has {self.tokenizer.vocabulary_size} tokens (mismatched files?)"
            )

    def _prime(self, prompt, batch_size):
        """Run the prompt through the network: the state after it and the logits for what follows."""
        text = prompt if prompt else (DEFAULT_PRIMER if DEFAULT_PRIMER in self.tokenizer.vocabulary else None)
        # Failing that, the most frequent token (the vocabulary is sorted by frequency, after <unk>).
        most_frequent = 0 if self.tokenizer.unknown_id is None else 1
        ids = self.tokenizer.encode(text) if text else np.array([most_frequent], np.int32)
        state = self.engine.initial_state(batch_size)
        logits, state = self.engine.run(np.tile(ids, (batch_size, 1)), state)  # (batch, time, vocab)
        return logits[:, -1], state

    def stream_tokens(self, settings):
        """Yield token ids of shape (num_samples,), one step at a time, for a ``SamplingConfig``."""
        strategy = sampling.get(settings.strategy, temperature=settings.temperature)
        rng = np.random.default_rng(settings.seed)
        logits, state = self._prime(settings.prompt, settings.num_samples)
        for _ in range(settings.length):
            if self.tokenizer.unknown_id is not None:
                logits[:, self.tokenizer.unknown_id] = -np.inf  # never write "<unk>"
            tokens = strategy.choose(logits, rng)  # (num_samples,)
            yield tokens
            logits, state = self.engine.step(tokens, state)

    def stream(self, prompt="", *, length=500, temperature=1.0, seed=None):
        """Yield the text of one sample piece by piece (the prompt is not repeated)."""
        settings = SamplingConfig(temperature=temperature, length=length, prompt=prompt, seed=seed)
        for tokens in self.stream_tokens(settings):
            yield self.tokenizer.vocabulary[int(tokens[0])]

    def generate(self, prompt="", *, length=500, temperature=1.0, num_samples=1, seed=None):
        """Samples as strings, each the prompt followed by ``length`` new tokens; a list if num_samples > 1."""
        settings = SamplingConfig(temperature=temperature, length=length, prompt=prompt,
                                  num_samples=num_samples, seed=seed)
        steps = list(self.stream_tokens(settings))
        columns = np.stack(steps, axis=1) if steps else np.zeros((num_samples, 0), np.int64)
        samples = [prompt + self.tokenizer.decode(row) for row in columns]
        return samples if num_samples > 1 else samples[0]


def resolve_model_directory(path=None):
    """The model directory a user meant: ``path``, or the newest under ./saved_models."""
    return Path(path) if path is not None else artifacts.newest_model_directory()


def load(path=None):
    """A ``Generator`` for the model directory at ``path`` (default: the newest saved)."""
    saved_model = artifacts.load_saved_model(resolve_model_directory(path))
    return Generator(saved_model, NumpyEngine.from_file(saved_model.model_path))
