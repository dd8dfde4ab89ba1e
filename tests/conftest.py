"""Shared fixtures: a small text written here, and one tiny trained model per session."""

import os
import random
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Token stores of the tests' corpora go to a directory of this session, never to ~/.cache.
if "TEXTGEN_CACHE" not in os.environ:
    import tempfile

    os.environ["TEXTGEN_CACHE"] = tempfile.mkdtemp(prefix="textgen-test-cache-")

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


def run_textgen(*arguments, cwd=None, env=None, timeout=300):
    """``python -m textgen ARGUMENTS`` in a process of its own (a hang fails the test, not the suite)."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "textgen", *map(str, arguments)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def quiet(line):
    """An ``echo`` that prints nothing: tests read results, not progress lines."""


# A network that trains in a second or two; every test that trains starts from these settings.
SMALL = dict(units=8, embedding_dim=4, layers=1, seq_length=20, batch_size=8, epochs=1, precision="float32")


def train_small(corpus, root, **settings):
    """``textgen.train`` on ``corpus`` with SMALL's settings (``settings`` override them), quietly."""
    import textgen

    return textgen.train(corpus, root=root, **{"echo": quiet, **SMALL, **settings})


def trained_fixture(tmp_path_factory, name, lines, **settings):
    root = tmp_path_factory.mktemp(name)
    corpus_path = root / f"{name}.txt"
    corpus_path.write_text(make_text(lines=lines), encoding="utf-8")
    result = train_small(corpus_path, root / "saved_models", **settings)
    return result.directory, corpus_path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny char-level 2-layer LSTM trained for a few seconds: (model directory, corpus path)."""
    return trained_fixture(
        tmp_path_factory,
        "tiny",
        300,
        layers=2,
        units=24,
        embedding_dim=8,
        seq_length=32,
        batch_size=16,
        epochs=2,
        learning_rate=1e-2,
    )


@pytest.fixture(scope="session")
def tiny_word_model(tmp_path_factory):
    """A tiny word-level LSTM: (model directory, corpus path)."""
    return trained_fixture(tmp_path_factory, "words", 200, level="word", seq_length=10)


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory):
    """An untrained 2x1024 char LSTM (a few ms per step): streams long enough to stop mid-way."""
    from textgen.saved.untrained import write_untrained_model

    # Lowercase letters, space, punctuation and newline: the characters the tests' prompts use.
    text = "abcdefghijklmnopqrstuvwxyz .,\n"
    return write_untrained_model(tmp_path_factory.mktemp("slow") / "slow", text, units=1024)
