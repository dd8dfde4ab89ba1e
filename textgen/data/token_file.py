"""A corpus's token ids on disk (the token store's ids.bin), read by position.

The ids take the smallest unsigned type that holds every id of the vocabulary
(``id_dtype``): a char-level corpus stores one byte per token.
"""

import os
from pathlib import Path

import numpy as np

from textgen.limits import READ_PIECE_BYTES
from textgen.safe_files import open_file


def id_dtype(vocabulary_size):
    """uint8, uint16 or uint32: the smallest type for ids below ``vocabulary_size``."""
    return np.uint8 if vocabulary_size <= 1 << 8 else np.uint16 if vocabulary_size <= 1 << 16 else np.uint32


class TokenFile:
    """Token ids in a file, read by position: a window, a slice, never the whole file unless asked.

    Why not a memory map: every page a map touches counts as the process's
    memory, and the kernel maps about 16 neighbouring pages per touch. Training
    touches windows at random, so after one epoch the whole file would be
    resident (0.5 GB after 12,800 windows of a 1 GB store). ``os.pread`` reads
    only the bytes asked for, into the page cache, which the kernel owns.

    ``ids[a:b]`` is a TokenFile of that stretch (no read); ``numpy.asarray(ids)``
    reads it; ``ids[i]`` reads one id; ``ids.windows(starts, width)`` reads (batch, width) rows.
    """

    def __init__(self, path, dtype, start=0, stop=None, *, handle=None):
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self._handle = handle or open_file(path, "rb")  # shared by every slice; a FIFO or symlink is refused
        tokens = os.fstat(self._handle.fileno()).st_size // self.dtype.itemsize
        self._start, self._stop = start, tokens if stop is None else stop

    def __len__(self):
        return self._stop - self._start

    def __getitem__(self, part):
        if isinstance(part, (int, np.integer)):  # one id
            position = range(len(self))[part]  # negative positions count from the end; IndexError past it
            return self._read(position, 1)[0]
        if not isinstance(part, slice) or part.step not in (None, 1):
            raise TypeError("a TokenFile is read by [position] or [start:stop]; use windows() for many positions")
        start, stop, _ = part.indices(len(self))
        return TokenFile(
            self.path, self.dtype, self._start + start, self._start + max(start, stop), handle=self._handle
        )

    def _read(self, first, count):
        data = os.pread(self._handle.fileno(), count * self.dtype.itemsize, (self._start + first) * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype)

    def __array__(self, dtype=None, copy=None):
        array = self._read(0, len(self))
        return array if dtype is None else array.astype(dtype)

    def largest(self):
        """The largest id, read piece by piece (a damaged file may hold ids past the vocabulary)."""
        piece_tokens = READ_PIECE_BYTES // self.dtype.itemsize
        largest = 0
        for first in range(0, len(self), piece_tokens):
            largest = max(largest, int(self._read(first, min(piece_tokens, len(self) - first)).max()))
        return largest

    def windows(self, starts, width):
        """(batch, width) int32: row i is the ``width`` ids from position ``starts[i]``."""
        rows = np.empty((len(starts), width), dtype=np.int32)
        for row, start in enumerate(starts):
            rows[row] = self._read(int(start), width)
        return rows
