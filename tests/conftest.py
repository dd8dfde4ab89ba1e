"""Shared fixtures: a small text written here, and one tiny trained model per session."""

import os
import random

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WORDS = (
    "the river keeps a quiet count of stones and every stone remembers rain "
    "a lantern walks the hill at night while owls discuss the price of wheat "
    "we wrote our names in chalk and then the tide came in to read them"
).split()


def make_text(lines=400, seed=0):
    """Deterministic English-like lines with punctuation (our own words, no corpus text)."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        out.append(" ".join(words).capitalize() + rng.choice([".", ",", "!", "?", ";"]))
    return "\n".join(out) + "\n"


@pytest.fixture
def text():
    return make_text()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory, so ./saved_models is the test's own."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny char-level LSTM trained for a few seconds: (model directory, corpus path)."""
    from textgen.saved import artifacts
    from textgen.config import CorpusConfig, ModelConfig, TokenizerConfig, TrainConfig
    from textgen.training.loop import train
    from textgen.data.training_text import prepare_training_text

    root = tmp_path_factory.mktemp("tiny")
    corpus_path = root / "corpus.txt"
    corpus_path.write_text(make_text(lines=300), encoding="utf-8")
    corpus_config = CorpusConfig(sources=(str(corpus_path),))
    tokenizer_config = TokenizerConfig()
    model_config = ModelConfig(cell="lstm", num_layers=2, units=24, embedding_dim=8)
    train_config = TrainConfig(seq_length=32, batch_size=16, epochs=2, learning_rate=1e-2, precision="float32")
    text, train_config = prepare_training_text(corpus_config, tokenizer_config, train_config)
    directory = root / "saved_models" / "tiny"
    with artifacts.new_model_directory(directory):
        train(text, directory=directory, model_config=model_config, tokenizer_config=tokenizer_config,
              train_config=train_config, corpus_config=corpus_config, verbose=0, echo=lambda line: None)
    return directory, corpus_path
