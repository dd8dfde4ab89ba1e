"""Strategies on fake logits: exact outcomes and a chi-square check of the distribution."""

import numpy as np
import pytest

from textgen import sampling
from textgen.errors import TextgenError


def peaked(batch, vocabulary, winners):
    logits = np.zeros((batch, vocabulary))
    logits[np.arange(batch), winners] = 1e9
    return logits


def test_greedy_takes_the_argmax():
    rng = np.random.default_rng(0)
    assert list(sampling.get("greedy").choose(peaked(3, 5, [4, 0, 2]), rng)) == [4, 0, 2]


def test_temperature_sampling_with_a_certain_token_always_takes_it():
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert list(sampling.get("temperature", temperature=1.5).choose(peaked(2, 7, [6, 3]), rng)) == [6, 3]


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_sampling_matches_softmax_of_logits_over_t(temperature):
    logits = np.array([[0.0, 1.0, 2.0, -1.0, 0.5]])
    draws = 40_000
    rng = np.random.default_rng(1234)
    strategy = sampling.get("temperature", temperature=temperature)
    tokens = strategy.choose(np.repeat(logits, draws, axis=0), rng)
    observed = np.bincount(tokens, minlength=5)
    expected = np.exp(sampling.log_softmax(logits / temperature))[0] * draws
    chi_square = ((observed - expected) ** 2 / expected).sum()
    assert chi_square < 18.47  # chi-square, 4 degrees of freedom, p = 0.001


def test_log_softmax_is_stable_for_huge_logits():
    result = sampling.log_softmax(np.array([[1e9, 0.0, -1e9]]))
    assert np.isfinite(result[0, 0]) and result[0, 0] == 0.0


def test_unknown_strategy_and_bad_temperature():
    with pytest.raises(TextgenError, match="unknown sampling strategy 'nucleus2'"):
        sampling.get("nucleus2")
    with pytest.raises(TextgenError, match="temperature must be > 0"):
        sampling.get("temperature", temperature=0)
