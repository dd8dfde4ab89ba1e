"""Strategies on fake logits: exact outcomes and a chi-square check of the distribution."""

import itertools

import numpy as np
import pytest

from textgen.config import SamplingConfig
from textgen.errors import TextgenError
from textgen.generation import strategies as sampling
from textgen.generation.beam_search import beam_search
from textgen.generation.probabilities import log_softmax, logsumexp


def peaked(batch, vocabulary, winners):
    logits = np.zeros((batch, vocabulary))
    logits[np.arange(batch), winners] = 1e9
    return logits


def draw(settings, logits, draws, seed=1234):
    sampler = sampling.strategy_for(settings)
    return sampler.choose(np.repeat(np.asarray(logits, float)[np.newaxis], draws, axis=0), np.random.default_rng(seed))


def chi_square(tokens, probabilities):
    observed = np.bincount(tokens, minlength=len(probabilities))
    expected = probabilities * len(tokens)
    assert (observed[expected == 0] == 0).all(), "drew a token of probability 0"
    nonzero = expected > 0
    return (((observed - expected) ** 2)[nonzero] / expected[nonzero]).sum()


LOGITS = np.array([0.0, 1.0, 2.0, -1.0, 0.5, 1.5])


def test_greedy_takes_the_argmax():
    sampler = sampling.strategy_for(SamplingConfig(temperature=0))
    assert list(sampler.choose(peaked(3, 5, [4, 0, 2]), None)) == [4, 0, 2]


def test_random_sampling_with_a_certain_token_always_takes_it():
    tokens = draw(SamplingConfig(temperature=1.5), peaked(1, 7, [6])[0], 200)
    assert set(tokens) == {6}


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_sampling_matches_softmax_of_logits_over_t(temperature):
    tokens = draw(SamplingConfig(temperature=temperature), LOGITS, 40_000)
    expected = np.exp(log_softmax(LOGITS[np.newaxis] / temperature))[0]
    assert chi_square(tokens, expected) < 20.52  # chi-square, 5 degrees of freedom, p = 0.001


def test_top_k_keeps_exactly_the_k_best_in_proportion():
    tokens = draw(SamplingConfig(top_k=3), LOGITS, 30_000)
    assert set(tokens) == {2, 5, 1}  # logits 2.0, 1.5, 1.0
    expected = np.zeros(6)
    expected[[1, 2, 5]] = np.exp(LOGITS[[1, 2, 5]]) / np.exp(LOGITS[[1, 2, 5]]).sum()
    assert chi_square(tokens, expected) < 13.82  # 2 degrees of freedom, p = 0.001


def test_top_k_with_ties_keeps_exactly_k():
    processed = sampling.get("top_k", 2).process(np.array([[1.0, 3.0, 3.0, 3.0, 0.0]]))
    assert np.isfinite(processed).sum() == 2 and set(np.flatnonzero(np.isfinite(processed[0]))) <= {1, 2, 3}


@pytest.mark.parametrize(
    "p, kept", [(0.4, {2}), (0.6, {2, 5}), (0.8, {2, 5, 1}), (0.9, {2, 5, 1, 4}), (1.0, {0, 1, 2, 3, 4, 5})]
)
def test_top_p_keeps_the_minimal_set_reaching_p(p, kept):
    probabilities = np.exp(log_softmax(LOGITS[np.newaxis]))[0]  # .057 .154 .420 .021 .094 .255
    processed = sampling.get("top_p", p).process(LOGITS[np.newaxis].copy())
    assert set(np.flatnonzero(np.isfinite(processed[0]))) == kept
    order = sorted(kept, key=lambda token: -probabilities[token])
    assert probabilities[order].sum() >= p - 1e-12  # reaches p ...
    assert probabilities[order[:-1]].sum() < p  # ... and no smaller set does


def test_top_p_draws_in_proportion_within_the_nucleus():
    tokens = draw(SamplingConfig(top_p=0.8), LOGITS, 30_000)
    expected = np.zeros(6)
    expected[[1, 2, 5]] = np.exp(LOGITS[[1, 2, 5]]) / np.exp(LOGITS[[1, 2, 5]]).sum()
    assert chi_square(tokens, expected) < 13.82


def test_temperature_then_top_k_then_top_p_compose():
    # At T = 0.25 token 2 holds ~87% of the mass, so top-p 0.8 leaves it alone after top-k 3.
    tokens = draw(SamplingConfig(temperature=0.25, top_k=3, top_p=0.8), LOGITS, 2000)
    assert set(tokens) == {2}


def test_top_k_one_and_temperature_zero_equal_greedy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 9))
    greedy = np.argmax(logits, axis=-1)
    assert np.array_equal(sampling.strategy_for(SamplingConfig(top_k=1)).choose(logits, rng), greedy)
    assert np.array_equal(sampling.strategy_for(SamplingConfig(temperature=0)).choose(logits, rng), greedy)


def test_log_softmax_is_stable_for_huge_logits():
    result = log_softmax(np.array([[1e9, 0.0, -1e9]]))
    assert np.isfinite(result[0, 0]) and result[0, 0] == 0.0


def test_a_rare_token_keeps_its_share_of_the_draws_and_of_the_normalizer():
    """The exponentials are float32's, their sums float64's: a token 20 nats below the likeliest
    (p = 2.06e-9, which a float32 sum would round away from 1) still owns its slice of [0, 1)."""
    sampler = sampling.strategy_for(SamplingConfig())
    rare = np.array([[0.0, -20.0], [0.0, -20.0]], np.float32)
    assert list(sampler.choose_at(rare, np.array([1 - 1e-9, 1 - 3e-9]))) == [1, 0]
    logits = np.random.default_rng(3).uniform(-50, 50, size=(4, 300)).astype(np.float32)
    expected = np.logaddexp.reduce(logits.astype(np.float64), axis=-1)
    np.testing.assert_allclose(logsumexp(logits), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("vocabulary", [257, 3600])  # past the whole cumulative sum's limit; a partial last block
def test_a_big_vocabulary_draws_by_blocks_the_tokens_one_cumulative_sum_draws(vocabulary):
    rng = np.random.default_rng(vocabulary)
    weights = rng.random((64, vocabulary)).astype(np.float32) ** 8  # a few heavy tokens, many light ones
    weights[rng.random(weights.shape) < 0.3] = 0  # filtered tokens (top-k, top-p, <unk>) have no weight
    uniforms = np.concatenate([rng.random(62), [0.0, 1 - 1e-16]])  # and both ends of [0, 1)
    together = sampling._draw_in_blocks(weights, uniforms)
    assert np.array_equal(together, sampling._draw(weights, uniforms))
    alone = [sampling._draw_in_blocks(weights[row : row + 1], uniforms[row : row + 1])[0] for row in range(64)]
    assert np.array_equal(alone, together)  # a row's token does not depend on the batch it is in
    assert (weights[np.arange(64), together] > 0).all()


def test_top_k_over_a_big_vocabulary_draws_in_proportion():
    logits = np.random.default_rng(4).normal(size=1000)
    tokens = draw(SamplingConfig(top_k=6), logits, 30_000)
    best = np.argsort(-logits)[:6]
    expected = np.zeros(1000)
    expected[best] = np.exp(log_softmax(logits[best][np.newaxis]))[0]
    assert chi_square(tokens, expected) < 20.52  # 5 degrees of freedom, p = 0.001


def test_bad_processor_values():
    with pytest.raises(TextgenError, match="unknown sampling strategy 'nucleus2'"):
        sampling.get("nucleus2", 1)
    with pytest.raises(TextgenError, match="temperature must be > 0"):
        sampling.get("temperature", 0)
    with pytest.raises(TextgenError, match="top-k must be an integer >= 1"):
        sampling.get("top_k", 0)
    with pytest.raises(TextgenError, match=r"top-p must be in \(0, 1\]"):
        sampling.get("top_p", 1.5)


class MarkovEngine:
    """A fake engine: the next token's logits depend only on the last token (the state)."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=float)  # (vocabulary, vocabulary)
        self.vocabulary_size = self.table.shape[0]

    def initial_state(self, batch_size):
        return [(np.zeros(batch_size, dtype=int),)]

    def step(self, tokens, state):
        tokens = np.asarray(tokens)
        return self.table[tokens], [(tokens,)]


def exhaustive(table, first_logits, length):
    log_table = log_softmax(table)
    first = log_softmax(first_logits[np.newaxis])[0]
    scored = []
    for sequence in itertools.product(range(len(first)), repeat=length):
        total = first[sequence[0]] + sum(log_table[a, b] for a, b in zip(sequence, sequence[1:]))
        scored.append((total, list(sequence)))
    return sorted(scored, key=lambda item: -item[0])


@pytest.mark.parametrize("seed", range(5))
def test_beam_search_equals_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    vocabulary = 4
    table, first = rng.normal(0, 2, (vocabulary, vocabulary)), rng.normal(0, 2, vocabulary)
    engine = MarkovEngine(table)
    # Length 2 with beam width = vocabulary keeps every prefix: beam search is exact.
    beams = beam_search(
        engine,
        first[np.newaxis],
        engine.initial_state(1),
        beam_width=vocabulary,
        length=2,
        length_penalty=0.0,
        num_return=vocabulary,
    )
    best = exhaustive(table, first, 2)[:vocabulary]
    assert [beam.tokens for beam in beams] == [sequence for _, sequence in best]
    np.testing.assert_allclose([beam.log_probability for beam in beams], [total for total, _ in best])


def test_beam_search_finds_what_greedy_misses():
    # Token 0 looks best at first but leads only to bad continuations.
    table = np.array([[0.0, 0.0, 0.0], [9.0, -9.0, -9.0], [9.0, -9.0, -9.0]])
    first = np.array([[1.0, 0.9, 0.0]])
    engine = MarkovEngine(table)
    greedy = beam_search(engine, first, engine.initial_state(1), beam_width=1, length=2)[0]
    wide = beam_search(engine, first, engine.initial_state(1), beam_width=3, length=2)[0]
    assert greedy.tokens[0] == 0 and wide.tokens == [1, 0]
    assert wide.log_probability > greedy.log_probability


def test_beam_width_one_is_greedy():
    rng = np.random.default_rng(7)
    table, first = rng.normal(size=(6, 6)), rng.normal(size=(1, 6))
    engine = MarkovEngine(table)
    beam = beam_search(engine, first, engine.initial_state(1), beam_width=1, length=8)[0]
    token, greedy = int(np.argmax(first)), []
    for _ in range(8):
        greedy.append(token)
        token = int(np.argmax(table[token]))
    assert beam.tokens == greedy


def test_beam_stops_at_stop_text_and_length_penalty_ranks():
    # Token 2 ("!") is likely; a beam that writes it is finished.
    table = np.log(np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.34, 0.33, 0.33]]))
    engine = MarkovEngine(table)
    decode = "ab!".__getitem__
    beams = beam_search(
        engine,
        table[[0]],
        engine.initial_state(1),
        beam_width=3,
        length=6,
        num_return=3,
        decode=decode,
        stop=("!",),
        length_penalty=0.0,
    )
    assert all(beam.tokens[-1] == 2 for beam in beams if beam.finished)
    assert any(beam.finished for beam in beams)
    assert beams[0].log_probability == max(beam.log_probability for beam in beams)


def test_the_length_penalty_decides_between_a_short_likely_beam_and_a_long_steady_one():
    # Tokens "a", "b", "!". "!" first (p 0.5) ends a beam at once: total -0.69 over 1 token. "aaaaaa"
    # (p 0.45, then 0.82 each) totals -1.79 over 6 tokens, -0.30 per token.
    first = np.log([[0.45, 0.05, 0.5]])
    table = np.log([[0.82, 0.08, 0.1], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]])
    engine = MarkovEngine(table)

    def best(length_penalty):
        return beam_search(
            engine,
            first,
            engine.initial_state(1),
            beam_width=3,
            length=6,
            decode="ab!".__getitem__,
            stop=("!",),
            length_penalty=length_penalty,
        )[0]

    assert best(0.0).tokens == [2] and best(0.0).finished  # pure log-probability: the short beam
    assert best(1.0).tokens == [0] * 6 and not best(1.0).finished  # per token: the long one
    np.testing.assert_allclose(best(1.0).log_probability, np.log(0.45) + 5 * np.log(0.82))
