"""Strategies: how the next token is chosen from the model's logits.

``STRATEGIES`` is the registry, by the name ``SamplingConfig.strategy`` gives:

    greedy   the likeliest token (temperature 0)
    random   a draw from the logits after a chain of processors
    beam     beam search (beam_search.py): the likeliest continuations, each beam with its own state

Random sampling passes the logits through a chain of processors, each a small
class with one override point (``process``), looked up by its lowercase name:

    temperature   logits / T: T < 1 sharpens towards the likeliest tokens, T > 1 flattens
    top_k         keep the k likeliest tokens
    top_p         keep the smallest set of likeliest tokens whose probability reaches p

and then draws from softmax of what is left, in that order (temperature, then
top-k, then top-p, like the usual generate APIs). Greedy takes the argmax.
Probabilities are summed in float64 whatever the model's precision, so rare
tokens keep their small but real chance. Greedy and random choose one token per
stream per step (``stepwise``); beam search looks at whole continuations.
"""

import numpy as np

from textgen.errors import TextgenError
from textgen.generation.beam_search import beam_search
from textgen.generation.probabilities import log_softmax, shifted_exponentials


class LogitsProcessor:
    """One transformation of logits (batch, vocabulary); ``process`` is the override point."""

    name = None

    def __init__(self, value):
        self.value = value

    @property
    def keeps_logits(self):
        """True when ``process`` returns the logits as they are (temperature 1, top-p 1)."""
        return False

    def process(self, logits):
        raise NotImplementedError


class Temperature(LogitsProcessor):
    name = "temperature"

    def __init__(self, value):
        if not value > 0:
            raise TextgenError(f"temperature must be > 0 for random sampling, got {value!r}")
        super().__init__(float(value))

    @property
    def keeps_logits(self):
        return self.value == 1.0

    def process(self, logits):
        return logits if self.keeps_logits else logits / self.value


class TopK(LogitsProcessor):
    name = "top_k"

    def __init__(self, value):
        if not (isinstance(value, int) and value >= 1):
            raise TextgenError(f"top-k must be an integer >= 1, got {value!r}")
        super().__init__(value)

    def process(self, logits):
        if self.value >= logits.shape[-1]:
            return logits
        # argpartition keeps exactly k per row, even when logits tie at the k-th place.
        kept = np.argpartition(-logits, self.value - 1, axis=-1)[:, : self.value]  # (batch, k)
        filtered = np.full_like(logits, -np.inf)
        np.put_along_axis(filtered, kept, np.take_along_axis(logits, kept, axis=-1), axis=-1)
        return filtered


class TopP(LogitsProcessor):
    name = "top_p"

    def __init__(self, value):
        if not (isinstance(value, (int, float)) and 0 < value <= 1):
            raise TextgenError(f"top-p must be in (0, 1], got {value!r}")
        super().__init__(float(value))

    @property
    def keeps_logits(self):
        return self.value >= 1.0

    def process(self, logits):
        if self.keeps_logits:
            return logits  # everything; and no rounding can drop the rarest token
        probabilities = np.exp(log_softmax(logits))
        order = np.argsort(-probabilities, axis=-1, kind="stable")  # likeliest first
        sorted_probabilities = np.take_along_axis(probabilities, order, axis=-1)
        mass_before = np.cumsum(sorted_probabilities, axis=-1) - sorted_probabilities
        # A token is kept while the mass of the likelier ones has not yet reached p:
        # that is exactly the smallest set whose mass reaches p.
        keep = np.zeros(logits.shape, dtype=bool)
        np.put_along_axis(keep, order, mass_before < self.value, axis=-1)
        return np.where(keep, logits, -np.inf)


PROCESSORS = {processor.name: processor for processor in (Temperature, TopK, TopP)}


def get(name, value):
    """The logits processor registered as ``name``, set to ``value``."""
    if name not in PROCESSORS:
        raise TextgenError(f"unknown sampling strategy {name!r}; choose from {', '.join(PROCESSORS)}")
    return PROCESSORS[name](value)


class RandomSampler:
    """Draws from softmax of the logits after a chain of processors."""

    name = "random"
    stepwise = True

    def __init__(self, processors=()):
        self.processors = list(processors)
        # The draw's weights are then the model's own: a caller that computed them may pass them in.
        self.draws_from_the_model = all(processor.keeps_logits for processor in self.processors)

    @classmethod
    def from_settings(cls, settings):
        chain = [("temperature", settings.temperature), ("top_k", settings.top_k), ("top_p", settings.top_p)]
        return cls([get(name, value) for name, value in chain if value is not None])

    def choose(self, logits, rng):
        """tokens (batch,) drawn from logits (batch, vocabulary)."""
        return self.choose_at(logits, rng.random(len(logits)))

    def choose_at(self, logits, uniforms, weights=None):
        """tokens (batch,) for logits (batch, vocabulary), each row's draw at its own uniform in [0, 1):
        rows of one batch may come from different random generators (a server's requests).
        ``weights``: shifted_exponentials(logits) where the caller has them and draws_from_the_model."""
        if weights is None or not self.draws_from_the_model:
            logits = np.asarray(logits, dtype=np.float32)  # (a float16 model's too: the processors divide)
            for processor in self.processors:
                logits = processor.process(logits)
            # Unnormalized probabilities are enough: the draw is scaled by their total.
            _, weights = shifted_exponentials(logits)  # (batch, vocabulary)
        if weights.shape[1] > _WHOLE_CDF_UP_TO:
            return _draw_in_blocks(weights, uniforms)
        return _draw(weights, uniforms)


# Inverse-CDF sampling: a row's token is the one whose slice of the cumulative weights holds its
# uniform x their total. A cumulative sum over every token is slow for big vocabularies (64 rows of
# 3,600 tokens: 1.8 ms a step on an AMD EPYC Zen 2), so beyond _WHOLE_CDF_UP_TO tokens the draw
# takes two levels: the block of _BLOCK tokens, from the blocks' sums, then the token inside it.
_WHOLE_CDF_UP_TO, _BLOCK = 256, 64


def _draw(weights, uniforms):
    """Tokens (batch,) by one cumulative sum of weights (batch, vocabulary) per row."""
    # (add.accumulate is what cumsum calls, 2.5 us sooner: cumsum's casting wrapper was half of a
    # single stream's draw on an AMD EPYC Zen 2)
    cumulative = np.add.accumulate(weights, axis=-1, dtype=np.float64)  # (batch, vocabulary)
    if len(cumulative) == 1:  # one stream: a binary search beats comparing every entry
        token = cumulative[0].searchsorted(uniforms[0] * cumulative[0, -1], side="right")
        return np.array([min(token, cumulative.shape[1] - 1)])
    draws = uniforms * cumulative[:, -1]
    return np.minimum((cumulative <= draws[:, np.newaxis]).sum(axis=-1), cumulative.shape[1] - 1)


def _draw_in_blocks(weights, uniforms):
    """The same draw as _draw, the cumulative sums taken over blocks, then inside one block per row."""
    rows, vocabulary = weights.shape
    blocks = -(-vocabulary // _BLOCK)
    padded = np.zeros((rows, blocks * _BLOCK), np.float32)  # zero weights past the last token
    padded[:, :vocabulary] = weights
    padded = padded.reshape(rows, blocks, _BLOCK)
    block_weights = padded.sum(axis=-1, dtype=np.float64)  # (rows, blocks)
    block_cumulative = np.cumsum(block_weights, axis=-1)
    draws = uniforms * block_cumulative[:, -1]
    if rows == 1:  # one stream: binary searches, the same comparisons as the counts below
        block = min(int(np.searchsorted(block_cumulative[0], draws[0], side="right")), blocks - 1)
        within = draws[0] - (block_cumulative[0, block] - block_weights[0, block])
        inside = np.cumsum(padded[0, block], dtype=np.float64)
        offset = min(int(np.searchsorted(inside, within, side="right")), _BLOCK - 1)
        if padded[0, block, offset] > 0:
            return np.array([block * _BLOCK + offset])
        return _draw(weights, uniforms)
    block = np.minimum((block_cumulative <= draws[:, np.newaxis]).sum(axis=-1), blocks - 1)  # (rows,)
    every = np.arange(rows)
    within = draws - (block_cumulative[every, block] - block_weights[every, block])  # the draw inside its block
    inside = np.cumsum(padded[every, block], axis=-1, dtype=np.float64)  # (rows, _BLOCK)
    offset = np.minimum((inside <= within[:, np.newaxis]).sum(axis=-1), _BLOCK - 1)
    tokens = block * _BLOCK + offset
    # A block's sum and its own cumulative sum may differ in the last bit, which can put a draw at
    # the very edge of its block on a token of no weight (past the vocabulary, or filtered out):
    # such rows (about one in 10^16) are drawn again by the whole cumulative sum.
    astray = padded[every, block, offset] == 0
    if astray.any():
        tokens[astray] = _draw(weights[astray], uniforms[astray])
    return tokens


class GreedySampler:
    """Always the likeliest token (temperature 0): deterministic, and prone to loops."""

    name = "greedy"
    stepwise = True

    @classmethod
    def from_settings(cls, settings):
        return cls()

    def choose(self, logits, rng):
        return np.argmax(logits, axis=-1)


class BeamSearch:
    """Beam search with the settings' width, length penalty and number of beams returned."""

    name = "beam"
    stepwise = False

    def __init__(self, beam_width, length_penalty, num_return):
        self.beam_width, self.length_penalty, self.num_return = beam_width, length_penalty, num_return

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.beam_width, settings.length_penalty, settings.num_return)

    def search(self, engine, logits, state, **options):
        """The best beams from a primed state; ``options`` as ``beam_search.beam_search`` takes them."""
        return beam_search(
            engine,
            logits,
            state,
            beam_width=self.beam_width,
            length_penalty=self.length_penalty,
            num_return=self.num_return,
            **options,
        )


STRATEGIES = {strategy.name: strategy for strategy in (GreedySampler, RandomSampler, BeamSearch)}


def strategy_for(settings):
    """The strategy a ``SamplingConfig`` selects (by ``settings.strategy``), set up from it."""
    return STRATEGIES[settings.strategy].from_settings(settings)
