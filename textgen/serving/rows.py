"""The batcher's records: a request while it waits or writes (``Job``), and each of its choices
while it writes (``Row``), with its own settings, random generator, stop-string scanner and the
log-probability entries its released text has not yet covered.
"""

import collections
import dataclasses

import numpy as np

from textgen.generation.stop_strings import StopScanner
from textgen.serving.row_sampling import sampler_key


@dataclasses.dataclass
class Row:
    """One choice of one request, while it writes."""

    request: object  # the Job it belongs to
    index: int  # its choice index
    settings: object  # the request's SamplingConfig (row_sampling reads it)
    rng: np.random.Generator
    logprobs: int | None = None  # the request's logprobs: alternatives per token, or None
    scanner: StopScanner = None  # for its stop strings; it also counts the steps written
    remaining: int = 0  # tokens still to write
    key: tuple = None  # row_sampling.sampler_key of its settings
    draws: bool = True  # whether its sampler draws uniforms (not a greedy one)
    finished: bool = False  # ended: leaves the batch at the next hand-out
    pending_entries: collections.deque = dataclasses.field(default_factory=collections.deque)
    released_characters: int = 0  # text handed out so far
    entry_characters: int = 0  # text covered by the log-probability entries handed out

    def __post_init__(self):
        self.scanner, self.remaining = StopScanner(self.settings.stop), self.settings.length
        self.key = sampler_key(self.settings)
        # Most rows have neither stop strings nor log-probabilities: their text needs no scanning.
        self.plain = not self.settings.stop and self.logprobs is None

    def write(self, piece, entry):
        """A watched row's next token: (the text it releases, the entries that text completes, and
        "stop" or "length" when the row has finished, else None)."""
        released = self.scanner.feed(piece)
        self.remaining -= 1
        finished = self.scanner.stopped or self.remaining == 0
        if finished and not self.scanner.stopped:
            released += self.scanner.flush()  # held-back text no stop string completed
        reason = ("stop" if self.scanner.stopped else "length") if finished else None
        return released, self.entries_for(released, entry), reason

    def entries_for(self, released, entry):
        """The token entries whose text is now all handed out (stop strings hold text back)."""
        self.released_characters += len(released)
        if entry is not None:
            self.pending_entries.append(entry)
        ready = []
        while self.pending_entries and (
            self.entry_characters + len(self.pending_entries[0][0]) <= self.released_characters
        ):
            ready.append(self.pending_entries.popleft())
            self.entry_characters += len(ready[-1][0])
        return ready


class Job:
    """A request in the batcher: its settings, its prompt's ids and where its events go."""

    def __init__(self, completion, ids, sink):
        self.completion, self.ids, self.sink = completion, ids, sink
        self.read = 0  # prompt ids run so far
        self.state = None  # the state after the prompt ids read so far (batch 1), None before the first
        self.logits = None  # (1, vocabulary) after the last id read


# The rows of requests without a seed draw from this one generator: nobody can ask for their numbers
# again, and a fresh generator from the system's entropy is ~23 us, 1.5 ms for 64 rows joining at once
# (on the way to their first character). Its methods take its own lock (several batchers' threads).
_UNSEEDED = np.random.default_rng()


def random_generator(seed, index):
    """Choice 0 of a seeded request draws as `textgen sample --seed` does; choice i from (seed, i)."""
    if seed is None:
        return _UNSEEDED
    return np.random.default_rng(seed if index == 0 else [seed, index])
