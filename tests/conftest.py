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


TINY_MODEL = dict(
    cell="lstm",
    layers=2,
    units=24,
    embedding_dim=8,
    seq_length=32,
    batch_size=16,
    epochs=2,
    learning_rate=1e-2,
    precision="float32",
)


def quiet(line):
    """An ``echo`` that prints nothing: tests read results, not progress lines."""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny char-level LSTM trained for a few seconds: (model directory, corpus path)."""
    import textgen

    root = tmp_path_factory.mktemp("tiny")
    corpus_path = root / "corpus.txt"
    corpus_path.write_text(make_text(lines=300), encoding="utf-8")
    result = textgen.train(corpus_path, name="tiny", root=root / "saved_models", echo=quiet, **TINY_MODEL)
    return result.directory, corpus_path


@pytest.fixture(scope="session")
def tiny_word_model(tmp_path_factory):
    """A tiny word-level LSTM: (model directory, corpus path)."""
    import textgen

    root = tmp_path_factory.mktemp("tiny_words")
    corpus_path = root / "words.txt"
    corpus_path.write_text(make_text(lines=200), encoding="utf-8")
    result = textgen.train(
        corpus_path,
        name="words",
        root=root / "saved_models",
        echo=quiet,
        level="word",
        seq_length=10,
        batch_size=8,
        epochs=1,
        units=8,
        embedding_dim=4,
        layers=1,
        precision="float32",
    )
    return result.directory, corpus_path
