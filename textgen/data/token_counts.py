"""Pass 1 of building a token store: the corpus's tokens counted piece by piece, in first-seen order.

The vocabulary (data/tokenizer.py, ``from_counts``) is made from these counts,
so its order, ties included, is what ``Tokenizer.fit`` gives on the whole text.
"""

import collections

import numpy as np

from textgen.data.tokenizer import WordTokenizer


class CharacterCounts:
    """Characters counted in NumPy (a Counter took 5 of the 6 seconds a 100 MB store took to build).

    Keeps the order in which characters first appear, which breaks ties in the
    vocabulary's order exactly as ``Tokenizer.fit`` does on the whole text.
    """

    def __init__(self):
        self.counts = np.zeros(128, np.int64)  # by code point
        self.order = []  # code points, in order of first appearance
        self.seen = set()

    def add(self, piece):
        code_points = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)  # (characters,)
        binned = np.bincount(code_points)
        if len(binned) > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(len(binned) - len(self.counts), np.int64)])
        self.counts[: len(binned)] += binned
        if any(int(code) not in self.seen for code in np.flatnonzero(binned)):
            present, first = np.unique(code_points, return_index=True)  # only where new characters appear
            for code in present[np.argsort(first)]:
                if int(code) not in self.seen:
                    self.seen.add(int(code))
                    self.order.append(int(code))

    def merge(self, other):
        for code in other.order:
            if code not in self.seen:
                self.seen.add(code)
                self.order.append(code)
        if len(other.counts) > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(len(other.counts) - len(self.counts), np.int64)])
        self.counts[: len(other.counts)] += other.counts

    def counter(self):
        """A ``Counter`` of characters in first-seen order, as ``Tokenizer.from_counts`` takes it."""
        return collections.Counter({chr(code): int(self.counts[code]) for code in self.order})


class WordCounts:
    """Word-level token counts, in first-seen order (a Counter keeps the order keys arrive in)."""

    def __init__(self):
        self.counts = collections.Counter()

    def add(self, piece):
        self.counts.update(WordTokenizer.split(piece))

    def counter(self):
        return self.counts


# The counter of each tokenizer level.
COUNTS = {"char": CharacterCounts, "word": WordCounts}
