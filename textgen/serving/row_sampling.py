"""The next token of many streams at once, each with its own settings and its own random generator.

A server's batch mixes requests: one samples at temperature 0.5 with top-k 20,
another greedily, a third with top-p 0.9. Rows with the same settings share one
sampler (strategies.py), applied to their rows of the batch's logits together;
each row then draws at a uniform from its own request's generator. The
processors work row by row, so a row's token is the one `textgen sample` would
choose with the same seed, whatever else is in the batch.
"""

import numpy as np

from textgen.generation.probabilities import logsumexp
from textgen.generation.strategies import strategy_for


def sampler_key(settings):
    """Requests whose rows can share one sampler: the same strategy with the same values."""
    return (settings.strategy, settings.temperature, settings.top_k, settings.top_p)


class RowSampler:
    """Chooses a token for every row of a batch; ``rows`` tell each row's sampler key and generator."""

    def __init__(self, unknown_id):
        self.unknown_id = unknown_id  # never written (the word level's <unk>), as in Generator
        self._samplers = {}  # sampler key -> strategy, made once per distinct setting

    def _sampler(self, settings):
        key = sampler_key(settings)
        if key not in self._samplers:
            self._samplers[key] = strategy_for(settings)
        return self._samplers[key]

    def choose(self, logits, rows, top_alternatives=0):
        """Tokens (batch,), their log-probabilities under the model (batch,), and, when
        ``top_alternatives`` > 0, the likeliest tokens and their log-probabilities (batch, that many).

        ``logits`` (batch, vocabulary) float32; ``rows``: objects with ``settings``, ``rng`` and
        ``key`` (their ``sampler_key``, computed once per row rather than at every step).
        """
        log_normalizer = logsumexp(logits)  # (batch,): log p(token) = logit - this
        if self.unknown_id is not None:
            logits[:, self.unknown_id] = -np.inf
        groups = {}
        for index, row in enumerate(rows):
            groups.setdefault(row.key, []).append(index)
        if len(groups) == 1:  # the common case (one request, or requests alike): the logits as they are
            tokens = self._choose(logits, rows, range(len(rows)))
        else:  # each group gathers its own rows
            tokens = np.empty(len(rows), np.int64)
            for indices in groups.values():
                tokens[indices] = self._choose(logits[indices], rows, indices)
        chosen = logits[np.arange(len(rows)), tokens] - log_normalizer
        if not top_alternatives:
            return tokens, chosen, None
        return tokens, chosen, _likeliest(logits, log_normalizer, top_alternatives)

    def _choose(self, logits, rows, indices):
        """Tokens for the rows ``indices`` of one sampler group, whose logits are ``logits``."""
        sampler = self._sampler(rows[indices[0]].settings)
        if sampler.name == "greedy":
            return np.argmax(logits, axis=-1)
        return sampler.choose_at(logits, np.array([rows[index].rng.random() for index in indices]))


def _likeliest(logits, log_normalizer, count):
    """(ids, log-probabilities), each (batch, count), likeliest first."""
    count = min(count, logits.shape[1])
    ids = np.argpartition(-logits, count - 1, axis=-1)[:, :count]  # (batch, count), unordered
    values = np.take_along_axis(logits, ids, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    ids, values = np.take_along_axis(ids, order, axis=-1), np.take_along_axis(values, order, axis=-1)
    return ids, values - log_normalizer[:, None]
