"""The token store: a corpus encoded once into a file of token ids, read from disk by training.

    $TEXTGEN_CACHE (default ~/.cache/textgen)/tokens/<key>/
        ids.bin        the corpus's token ids: uint8, uint16 or uint32, by vocabulary size
        manifest.json  the sources (path, size, mtime), the settings, counts and sha256

The text is never in memory whole. The files are read in pieces
(corpus.iter_corpus_text), cut between tokens (Tokenizer.token_aligned: a word
split by a piece boundary moves whole into the next piece), twice: once to
count the tokens (the vocabulary), once to encode them into ids.bin; training then reads its windows from
ids.bin by position (TokenFile, data/dataset.py). The key hashes the sources' paths, sizes
and modification times with every setting that changes the ids, so a second run
on the same files (another --name, another model size) reuses the store, and a
changed file makes a new one. Delete the directory to reclaim the space. Where
the cache cannot be written (a read-only home), the store lives in a temporary
directory for the run.
"""

import atexit
import collections
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np

from textgen.data.corpus import iter_corpus_text
from textgen.data.tfds_source import TfdsSource
from textgen.data.tokenizer import TOKENIZERS, WordTokenizer, tokenizer_from_dict
from textgen.errors import TextgenError

CACHE_VARIABLE = "TEXTGEN_CACHE"
SOURCES_LISTED = 10  # a saved model's config.json names this many of its corpus's files
STORE_VERSION = 1


def cache_directory():
    """Where token stores live: $TEXTGEN_CACHE, else $XDG_CACHE_HOME/textgen, else ~/.cache/textgen."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "textgen"


@dataclasses.dataclass(frozen=True)
class StoredCorpus:
    """What a run knows of a corpus it reads from a token store (corpus.Corpus, without the text)."""

    files: tuple  # each file's path, or a tfds: source's full spelling
    name: str
    characters: int
    sha256: str
    sizes: tuple = ()  # bytes read from each of ``files`` (a tfds: source: its prepared files)

    def describe(self):
        """The ``corpus`` section of a saved model's config.json: what it was, and where it came from."""
        read_from = [f"{source} ({size:,} bytes)" for source, size in zip(self.files, self.sizes)]
        if len(read_from) > SOURCES_LISTED:
            read_from = read_from[:SOURCES_LISTED] + [f"and {len(read_from) - SOURCES_LISTED:,} more files"]
        summary = {"name": self.name, "files": len(self.files), "characters": self.characters, "sha256": self.sha256}
        return {**summary, "read_from": read_from}


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
        self._handle = handle or open(path, "rb", buffering=0)  # shared by every slice
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

    def windows(self, starts, width):
        """(batch, width) int32: row i is the ``width`` ids from position ``starts[i]``."""
        rows = np.empty((len(starts), width), dtype=np.int32)
        for row, start in enumerate(starts):
            rows[row] = self._read(int(start), width)
        return rows


def _writable_stores():
    """The cache's tokens/ directory; where it cannot be made (a read-only home), one for this process only."""
    stores = cache_directory() / "tokens"
    try:
        stores.mkdir(parents=True, exist_ok=True)
        return stores
    except OSError:
        fallback = Path(tempfile.mkdtemp(prefix="textgen-tokens-"))
        atexit.register(shutil.rmtree, fallback, True)
        return fallback


def _id_dtype(vocabulary_size):
    return np.uint8 if vocabulary_size <= 1 << 8 else np.uint16 if vocabulary_size <= 1 << 16 else np.uint32


def _key(files, corpus_config, tokenizer_config, tokenizer, drop_unknown):
    sources, sizes = [], []
    for path in files:
        if isinstance(path, TfdsSource):  # the dataset's prepared files stand for it: [name, size, mtime] each
            sources.append(path.fingerprint())
            sizes.append(sum(size for _, size, _ in sources[-1][2:]))
            continue
        info = os.stat(path)
        sources.append([str(Path(path).resolve()), info.st_size, info.st_mtime_ns])
        sizes.append(info.st_size)
    settings = {
        "version": STORE_VERSION,
        "sources": sources,
        "encoding": corpus_config.encoding,
        "errors": corpus_config.errors,
        "tokenizer": tokenizer_config.to_dict(),
        "given": None if tokenizer is None else tokenizer.to_dict(),
        "drop_unknown": drop_unknown,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32], sources, sizes


class _CharacterCounts:
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


class _WordCounts:
    """Word-level token counts, in first-seen order (a Counter keeps the order keys arrive in)."""

    def __init__(self):
        self.counts = collections.Counter()

    def add(self, piece):
        self.counts.update(WordTokenizer.split(piece))

    def counter(self):
        return self.counts


def _scan(files, corpus_config, tokenizer_config):
    """Pass 1: the corpus's token counts, in first-seen order, its text streamed in token-aligned pieces."""
    counts = _CharacterCounts() if tokenizer_config.level == "char" else _WordCounts()
    for piece in TOKENIZERS[tokenizer_config.level].token_aligned(iter_corpus_text(files, corpus_config)):
        counts.add(piece.lower() if tokenizer_config.lowercase else piece)
    return counts.counter()


DROP_HINT = "; pass --drop-unknown to leave them out"


def _tokenizer_for(counts, tokenizer_config, tokenizer, drop_unknown, unknown_hint=DROP_HINT):
    """The run's tokenizer (fitted to the counts, or the given one) and the characters to drop."""
    if tokenizer is None:
        fitted = TOKENIZERS[tokenizer_config.level].from_counts(
            counts,
            max_vocab=tokenizer_config.max_vocab,
            min_count=tokenizer_config.min_count,
            lowercase=tokenizer_config.lowercase,
        )
        return fitted, ""
    if tokenizer.unknown_token is not None:
        return tokenizer, ""
    unknown = [character for character in counts if character not in tokenizer.vocabulary]
    if unknown and not drop_unknown:
        shown = ", ".join(repr(character) for character in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise TextgenError(
            f"{len(unknown)} characters of the corpus are not in the model's vocabulary: {shown}{more}{unknown_hint}"
        )
    return tokenizer, "".join(unknown)


def _encode(files, corpus_config, tokenizer, dropped, ids_path):
    """Pass 2: the corpus's text, in token-aligned pieces, into ids_path; (characters, tokens, sha256 of the text)."""
    digest, characters, tokens, dtype = hashlib.sha256(), 0, 0, _id_dtype(tokenizer.vocabulary_size)
    drop = {ord(character): None for character in dropped}
    pieces = iter_corpus_text(files, corpus_config)
    if drop:
        pieces = (piece.translate(drop) for piece in pieces)
    with open(ids_path, "wb") as handle:
        for piece in tokenizer.token_aligned(pieces):
            digest.update(piece.encode("utf-8"))
            characters += len(piece)
            ids = tokenizer.encode(piece)
            tokens += len(ids)
            ids.astype(dtype).tofile(handle)
        handle.flush()
        os.fsync(handle.fileno())
    return characters, tokens, digest.hexdigest()


def open_token_store(
    corpus_config, tokenizer_config, *, resolved, tokenizer=None, drop_unknown=False, unknown_hint=DROP_HINT
):
    """(StoredCorpus, tokenizer, ids): the corpus's token ids as a TokenFile, built on first use.

    ``resolved``: (files, name) from corpus.resolve_sources. ``tokenizer``: a
    resumed or fine-tuned run's, used as it is (``drop_unknown`` leaves out the
    characters it lacks; ``unknown_hint`` ends the refusal when it lacks some and may not drop them).
    """
    files, name = resolved
    key, sources, sizes = _key(files, corpus_config, tokenizer_config, tokenizer, drop_unknown)
    directory = _writable_stores() / key
    if not (directory / "manifest.json").is_file():
        _build(directory, files, corpus_config, tokenizer_config, tokenizer, drop_unknown, sources, unknown_hint)
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    tokenizer = tokenizer_from_dict(manifest["tokenizer"])
    ids = TokenFile(directory / "ids.bin", _id_dtype(tokenizer.vocabulary_size))
    if len(ids) != manifest["tokens"]:
        shutil.rmtree(directory, ignore_errors=True)
        raise TextgenError(f"the token store {directory} was damaged and is removed; run again to rebuild it")
    corpus = StoredCorpus(
        tuple(str(path) for path in files), name, manifest["characters"], manifest["sha256"], tuple(sizes)
    )
    return corpus, tokenizer, ids


def _build(directory, files, corpus_config, tokenizer_config, tokenizer, drop_unknown, sources, unknown_hint):
    counts = _scan(files, corpus_config, tokenizer_config)
    tokenizer, dropped = _tokenizer_for(counts, tokenizer_config, tokenizer, drop_unknown, unknown_hint)
    staging = directory.with_name(f".{directory.name}-{secrets.token_hex(4)}")  # whole or not at all
    staging.mkdir()
    try:
        characters, tokens, sha256 = _encode(files, corpus_config, tokenizer, dropped, staging / "ids.bin")
        manifest = {
            "version": STORE_VERSION,
            "sources": sources,
            "tokenizer": tokenizer.to_dict(),
            "characters": characters,
            "tokens": tokens,
            "sha256": sha256,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        try:
            os.rename(staging, directory)
        except OSError:  # another run built it meanwhile: use theirs
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
