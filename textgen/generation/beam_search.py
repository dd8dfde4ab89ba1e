"""Beam search: keep the ``beam_width`` likeliest continuations at every step.

Each beam carries its own RNN state. At each step every beam proposes every
token; of the beam_width x vocabulary candidates the beam_width best (by total
log-probability) survive, and each survivor's state is gathered from its
parent beam. A beam that reaches a stop string is finished and set aside.
Finished beams are ranked by ``log_probability / length ** length_penalty``
(0 = pure log-probability; larger values favour longer texts).
"""

import dataclasses

import numpy as np

from textgen.generation.probabilities import log_softmax


def gather_state(state, indices):
    """Select batch rows ``indices`` from every array of a (nested) engine state."""
    if isinstance(state, (list, tuple)):
        return type(state)(gather_state(part, indices) for part in state)
    return state[indices]


@dataclasses.dataclass
class Beam:
    tokens: list
    log_probability: float
    finished: bool = False

    def score(self, length_penalty):
        return self.log_probability / max(1, len(self.tokens)) ** length_penalty


def _trace_back(history, position):
    """The tokens of the beam at ``position`` after the last step, following parent pointers."""
    tokens = []
    for parents, step_tokens in reversed(history):
        tokens.append(int(step_tokens[position]))
        position = parents[position]
    return tokens[::-1]


def _best_candidates(totals, logits, beam_width, masked_token):
    """The best continuations of the live beams: (parents, tokens, totals), best first.

    totals (beams,) are the beams' log-probabilities so far; logits (beams, vocabulary).
    """
    log_probabilities = log_softmax(logits)  # (beams, vocabulary)
    if masked_token is not None:
        log_probabilities[:, masked_token] = -np.inf
    flat = (totals[:, np.newaxis] + log_probabilities).ravel()  # (beams * vocabulary,)
    count = min(beam_width, int(np.isfinite(flat).sum()))
    best = np.argpartition(-flat, count - 1)[:count]
    best = best[np.argsort(-flat[best], kind="stable")]  # best first, ties in a fixed order
    parents, tokens = np.divmod(best, log_probabilities.shape[1])
    return parents, tokens, flat[best]


class _StopWatch:
    """Which beams' text now holds a stop string; keeps just enough of each beam's text to tell."""

    def __init__(self, stop, decode):
        self.stop, self.decode = stop, decode
        self.tail_length = max((len(text) for text in stop), default=0)
        self.tails = [""]  # (beams,) the end of each live beam's text

    def finished(self, parents, tokens):
        """(candidates,) bool: True where the candidate's text contains a stop string."""
        if not self.stop:
            return np.zeros(len(tokens), dtype=bool)
        self.tails = [
            (self.tails[parent] + self.decode(token))[-self.tail_length :] for parent, token in zip(parents, tokens)
        ]
        return np.array([any(text in tail for text in self.stop) for tail in self.tails], dtype=bool)

    def keep(self, alive):
        self.tails = [tail for tail, keep in zip(self.tails, alive) if keep]


def beam_search(
    engine,
    logits,
    state,
    *,
    beam_width,
    length,
    length_penalty=1.0,
    num_return=1,
    decode=None,
    stop=(),
    masked_token=None,
    cancelled=None,
):
    """Up to ``num_return`` best continuations of a primed state: ``Beam``s, best first.

    Args:
        engine: has ``step(tokens, state) -> (logits, state)``.
        logits: (1, vocabulary) logits for the first new token, from priming the prompt.
        state: the engine state after the prompt, batch size 1.
        beam_width: beams kept at each step.
        length: tokens to generate at most.
        length_penalty: the exponent of the length in the ranking score.
        num_return: how many of the best beams to return.
        decode: token id -> text; needed with ``stop``.
        stop: strings that finish a beam once its text contains one.
        masked_token: a token id never to emit (the tokenizer's ``<unk>``), or None.
        cancelled: asked before each step; True ends the search with no beams (its client is gone).
    """
    # history[step] = (parent position, token) of each beam kept at that step:
    # parent pointers instead of copied token lists keep each step O(beam_width).
    history, finished, watch = [], [], _StopWatch(stop, decode)
    totals = np.zeros(1)  # (beams,) log-probability of each live beam
    for _ in range(length):
        if cancelled is not None and cancelled():
            return []
        parents, tokens, candidate_totals = _best_candidates(totals, logits, beam_width, masked_token)
        history.append((parents, tokens))
        done = watch.finished(parents, tokens)
        finished += [Beam(_trace_back(history, at), float(candidate_totals[at]), True) for at in np.flatnonzero(done)]
        alive = ~done
        totals = candidate_totals[alive]
        if not alive.any():
            break
        watch.keep(alive)
        history[-1] = (parents[alive], tokens[alive])  # positions now index the live beams only
        logits, state = engine.step(tokens[alive], gather_state(state, parents[alive]))
    live = [Beam(_trace_back(history, position), float(total)) for position, total in enumerate(totals)]
    ranked = sorted(finished + live, key=lambda beam: -beam.score(length_penalty))
    return ranked[:num_return]
