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
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from textgen.data.corpus import DECODING_HINT, iter_corpus_text
from textgen.data.tfds_source import TfdsSource
from textgen.data.token_counts import COUNTS
from textgen.data.token_file import TokenFile, id_dtype
from textgen.data.tokenizer import TOKENIZERS, tokenizer_from_dict
from textgen.errors import TextgenError
from textgen.limits import MAX_JSON_BYTES
from textgen.safe_files import open_file, read_bounded

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


DROP_HINT = "; pass --drop-unknown to leave them out"


@dataclasses.dataclass(frozen=True)
class _Request:
    """What a store is built from: the files, how they are read, and how their text is tokenized."""

    files: tuple  # corpus.resolve_sources's files (paths and tfds: sources)
    corpus_config: object  # config.CorpusConfig: encoding, errors
    tokenizer_config: object  # config.TokenizerConfig
    tokenizer: object = None  # a resumed or fine-tuned run's, used as it is
    drop_unknown: bool = False  # with ``tokenizer``: leave out the characters it lacks
    unknown_hint: str = DROP_HINT  # ends the refusal when it lacks some and may not drop them
    decoding_hint: str = DECODING_HINT  # what a decoding error suggests (the command's own options)


def _key(request):
    """(the store's directory name, the sources' fingerprints, their sizes in bytes)."""
    sources, sizes = [], []
    for path in request.files:
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
        "encoding": request.corpus_config.encoding,
        "errors": request.corpus_config.errors,
        "tokenizer": request.tokenizer_config.to_dict(),
        "given": None if request.tokenizer is None else request.tokenizer.to_dict(),
        "drop_unknown": request.drop_unknown,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32], sources, sizes


def _scan(request):
    """Pass 1: the corpus's token counts, in first-seen order, its text streamed in token-aligned pieces."""
    level, lowercase = request.tokenizer_config.level, request.tokenizer_config.lowercase
    counts = COUNTS[level]()
    for piece in TOKENIZERS[level].token_aligned(
        iter_corpus_text(request.files, request.corpus_config, hint=request.decoding_hint)
    ):
        counts.add(piece.lower() if lowercase else piece)
    return counts.counter()


def _tokenizer_for(counts, request):
    """The run's tokenizer (fitted to the counts, or the given one) and the characters to drop."""
    tokenizer_config, tokenizer = request.tokenizer_config, request.tokenizer
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
    if unknown and not request.drop_unknown:
        shown = ", ".join(repr(character) for character in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise TextgenError(
            f"{len(unknown)} characters of the corpus are not in the model's vocabulary: {shown}{more}"
            + request.unknown_hint
        )
    return tokenizer, "".join(unknown)


def _encode(request, tokenizer, dropped, ids_path):
    """Pass 2: the corpus's text, in token-aligned pieces, into ids_path; (characters, tokens, sha256 of the text)."""
    digest, characters, tokens, dtype = hashlib.sha256(), 0, 0, id_dtype(tokenizer.vocabulary_size)
    drop = {ord(character): None for character in dropped}
    pieces = iter_corpus_text(request.files, request.corpus_config, hint=request.decoding_hint)
    if drop:
        pieces = (piece.translate(drop) for piece in pieces)
    with open_file(ids_path, "wb") as handle:
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
    corpus_config,
    tokenizer_config,
    *,
    resolved,
    tokenizer=None,
    drop_unknown=False,
    unknown_hint=DROP_HINT,
    decoding_hint=DECODING_HINT,
):
    """(StoredCorpus, tokenizer, ids): the corpus's token ids as a TokenFile, built on first use.

    ``resolved``: (files, name) from corpus.resolve_sources. ``tokenizer``: a
    resumed or fine-tuned run's, used as it is (``drop_unknown`` leaves out the
    characters it lacks; ``unknown_hint`` ends the refusal when it lacks some and may not drop them).
    """
    files, name = resolved
    request = _Request(
        tuple(files), corpus_config, tokenizer_config, tokenizer, drop_unknown, unknown_hint, decoding_hint
    )
    key, sources, sizes = _key(request)
    directory = _writable_stores() / key
    if not os.path.lexists(directory / "manifest.json"):
        _build(directory, request, sources)
    manifest, tokenizer, ids = _open_store(directory)
    corpus = StoredCorpus(
        tuple(str(path) for path in files), name, manifest["characters"], manifest["sha256"], tuple(sizes)
    )
    return corpus, tokenizer, ids


def _open_store(directory):
    """(manifest, tokenizer, ids) of a built store, every part checked; a damaged store is removed, in one line."""
    try:
        manifest = json.loads(read_bounded(directory / "manifest.json", MAX_JSON_BYTES))
        counts = [manifest.get(key) for key in ("tokens", "characters")] if isinstance(manifest, dict) else [None]
        if not all(isinstance(count, int) and count >= 0 for count in counts) or not isinstance(
            manifest.get("sha256"), str
        ):
            raise ValueError("a manifest without its counts")
        tokenizer = tokenizer_from_dict(manifest["tokenizer"])
        ids = TokenFile(directory / "ids.bin", id_dtype(tokenizer.vocabulary_size))
        if len(ids) != manifest["tokens"] or (len(ids) and ids.largest() >= tokenizer.vocabulary_size):
            raise ValueError("ids that do not fit the manifest")
    except (TextgenError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        shutil.rmtree(directory, ignore_errors=True)
        raise TextgenError(f"the token store {directory} was damaged and is removed; run again to rebuild it") from None
    return manifest, tokenizer, ids


def _build(directory, request, sources):
    """Both passes into a staging directory, renamed into place only when whole."""
    counts = _scan(request)
    tokenizer, dropped = _tokenizer_for(counts, request)
    staging = directory.with_name(f".{directory.name}-{secrets.token_hex(4)}")  # whole or not at all
    staging.mkdir()
    try:
        characters, tokens, sha256 = _encode(request, tokenizer, dropped, staging / "ids.bin")
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
