"""The next token of many streams at once, each with its own settings and its own random generator.

A server's batch mixes requests: one samples at temperature 0.5 with top-k 20,
another greedily, a third with top-p 0.9. Rows with the same settings share one
sampler (strategies.py), applied to their rows of the batch's logits together;
each row then draws at a uniform from its own request's generator. The
processors work row by row, so a row's token is the one `textgen sample` would
choose with the same seed, whatever else is in the batch.

Which rows share a sampler changes only when rows join or leave, so the batcher
asks for a ``plan`` then, not at every step; and each row's uniforms are drawn a
block of steps at a time (``RowDraws``): ``rng.random(n)`` gives the very
numbers that n calls of ``rng.random()`` give, so a seeded row still draws what
`textgen sample --seed` draws, without a Python call per row per step.
"""

import numpy as np

from textgen.generation.probabilities import logsumexp
from textgen.generation.strategies import strategy_for

# Steps of uniforms drawn at once for every row: (rows, DRAW_BLOCK) float64, 512 KB at 256 rows.
DRAW_BLOCK = 256


def sampler_key(settings):
    """Requests whose rows can share one sampler: the same strategy with the same values."""
    return (settings.strategy, settings.temperature, settings.top_k, settings.top_p)


class RowSampler:
    """Chooses a token for every row of a batch, by a ``plan`` of which rows share which sampler."""

    def __init__(self, unknown_id):
        self.unknown_id = unknown_id  # never written (the word level's <unk>), as in Generator
        self._samplers = {}  # sampler key -> strategy, made once per distinct setting

    def sampler(self, settings):
        key = sampler_key(settings)
        if key not in self._samplers:
            self._samplers[key] = strategy_for(settings)
        return self._samplers[key]

    def plan(self, rows):
        """[(sampler, indices)] for ``rows`` (objects with ``settings`` and ``key``, their sampler_key);
        indices is None when one sampler serves every row (the common case: the logits as they are)."""
        groups = {}
        for index, row in enumerate(rows):
            groups.setdefault(row.key, []).append(index)
        if len(groups) == 1:
            return [(self.sampler(rows[0].settings), None)]
        return [(self.sampler(rows[indices[0]].settings), np.array(indices)) for indices in groups.values()]

    def choose(self, logits, plan, uniforms, *, log_probabilities=False, top_alternatives=0):
        """Tokens (batch,); with ``log_probabilities`` also their log-probabilities under the model
        (batch,), and with ``top_alternatives`` > 0 the likeliest tokens and their log-probabilities
        (batch, that many); None for what was not asked.

        ``logits`` (batch, vocabulary) float32, overwritten at the unknown token; ``uniforms``
        (batch,) each row's draw in [0, 1) (greedy rows ignore theirs).
        """
        log_normalizer = logsumexp(logits) if log_probabilities else None  # (batch,): log p = logit - this
        if self.unknown_id is not None:
            logits[:, self.unknown_id] = -np.inf
        if plan[0][1] is None:
            tokens = _choose(plan[0][0], logits, uniforms)
        else:  # each group gathers its own rows
            tokens = np.empty(len(logits), np.int64)
            for sampler, indices in plan:
                tokens[indices] = _choose(sampler, logits[indices], uniforms[indices])
        if not log_probabilities:
            return tokens, None, None
        chosen = logits[np.arange(len(logits)), tokens] - log_normalizer
        if not top_alternatives:
            return tokens, chosen, None
        return tokens, chosen, _likeliest(logits, log_normalizer, top_alternatives)


def _choose(sampler, logits, uniforms):
    if sampler.name == "greedy":
        return np.argmax(logits, axis=-1)
    return sampler.choose_at(logits, uniforms)


class RowDraws:
    """Every row's next uniform, each from the row's own generator, drawn DRAW_BLOCK steps at a time.

    ``block`` (rows, DRAW_BLOCK): column ``column`` is the next step's draws. A row
    that joins mid-block gets its first draws from that column on; rows that never
    draw (greedy ones) keep zeros and leave their generator alone.
    """

    def __init__(self):
        self.block = np.zeros((0, DRAW_BLOCK))
        self.column = 0

    @staticmethod
    def _fresh(row, count):
        return row.rng.random(count) if row.draws else np.zeros(count)

    def next(self, rows):
        """(rows,) uniforms for this step of ``rows`` (the batch, in its order)."""
        if self.column == DRAW_BLOCK:
            self.block = np.array([self._fresh(row, DRAW_BLOCK) for row in rows]).reshape(len(rows), DRAW_BLOCK)
            self.column = 0
        self.column += 1
        return self.block[:, self.column - 1]

    def join(self, rows):
        """Rows added at the end of the batch."""
        used = np.zeros(self.column)  # the block's steps already taken: not theirs
        fresh = [np.concatenate([used, self._fresh(row, DRAW_BLOCK - self.column)]) for row in rows]
        self.block = np.concatenate([self.block, np.array(fresh).reshape(len(rows), DRAW_BLOCK)])

    def keep(self, keep):
        """Only the rows where ``keep`` (rows,) is True stay."""
        self.block = self.block[keep]


def _likeliest(logits, log_normalizer, count):
    """(ids, log-probabilities), each (batch, count), likeliest first."""
    count = min(count, logits.shape[1])
    ids = np.argpartition(-logits, count - 1, axis=-1)[:, :count]  # (batch, count), unordered
    values = np.take_along_axis(logits, ids, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    ids, values = np.take_along_axis(ids, order, axis=-1), np.take_along_axis(values, order, axis=-1)
    return ids, values - log_normalizer[:, None]
