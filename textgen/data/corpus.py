"""Reading text sources into one normalized string, and splitting it.

A source is a file, a directory (its text files, recursively), a glob, or the
name of a built-in corpus. Every file is decoded (UTF-8 by default, a BOM
stripped) and its line endings normalized to ``\\n`` (CRLF and bare CR both
occur in real files), so the tokenizer never sees ``\\r``. Bad input fails with
one line naming the file: a binary file, undecodable bytes (with the byte
offset), an empty file, a missing path, a symlink loop.
"""

import codecs
import dataclasses
import glob
import hashlib
import sys
import sysconfig
from pathlib import Path

from textgen.data.corpus_directory import directory_files
from textgen.data.newlines import NewlineStream
from textgen.data.tfds_source import TfdsSource, is_tfds_source
from textgen.errors import TextgenError
from textgen.safe_files import open_file


def _python_stdlib_files():
    """The installed Python's standard-library source, less its test suites (~12 MB of code)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skipped = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    return [path for path in sorted(root.rglob("*.py")) if not skipped.intersection(path.relative_to(root).parts[:-1])]


# Built-in corpora: a name -> a function listing its files. Every machine with
# Python has these, so the README's first command needs no download.
NAMED_CORPORA = {"python-stdlib": _python_stdlib_files}


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Normalized text and where it came from."""

    text: str
    files: tuple
    name: str  # a default model name: the file stem, directory or corpus name

    @property
    def characters(self):
        return len(self.text)

    @property
    def sha256(self):
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def describe(self):
        """The ``corpus`` section of a saved model's config.json."""
        return {"name": self.name, "files": len(self.files), "characters": len(self.text), "sha256": self.sha256}


# How much of a file is decoded at a time: the text never has to be in memory whole.
CHUNK_BYTES = 1 << 22
_UTF8_BOM = b"\xef\xbb\xbf"


def _is_utf8(encoding):
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def _codec_for(encoding, head):
    """The codec that decodes a file starting with ``head`` as ``bytes.decode(encoding)`` would.

    utf-8-sig strips the BOM some editors write. UTF-16 and UTF-32 without a BOM
    mean the machine's byte order to ``bytes.decode``, but their incremental
    decoders refuse such a stream, so the byte order is named for them.
    """
    if _is_utf8(encoding):
        return "utf-8-sig"
    name = codecs.lookup(encoding).name
    if name in ("utf-16", "utf-32"):
        boms = (
            (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            if name == "utf-16"
            else (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
        )
        if not head.startswith(boms):
            return f"{name}-{'le' if sys.byteorder == 'little' else 'be'}"
    return encoding


# What a decoding error suggests, where the command has --encoding and --errors (train).
DECODING_HINT = "try --encoding latin-1 or --errors replace"


def iter_file_text(path, *, encoding="utf-8", errors="strict", chunk_bytes=None, hint=DECODING_HINT):
    """One file's normalized text in pieces; their concatenation is ``read_file``'s text, for any chunk size.

    The pieces are decoded incrementally (a character split between two reads
    is whole in the next piece), a CR at the end of a read waits for the next
    (CR LF is one line end), and a bad byte is reported at its offset in the
    file, as if the file had been read whole.
    """
    path = Path(path)
    handle = open_file(path, "rb", follow=True)  # a corpus file may be a link the user chose; never a FIFO
    with handle:
        codec = _codec_for(encoding, handle.read(4))
        handle.seek(0)
        decoder = codecs.getincrementaldecoder(codec)(errors=errors)
        newlines = NewlineStream()  # the pieces' line ends normalized as one text's
        consumed = decoded = 0  # bytes given to the decoder, characters it returned
        while True:
            try:
                data = handle.read(chunk_bytes or CHUNK_BYTES)
            except OSError as error:
                raise TextgenError(f"cannot read {path}: {error.strerror or error}") from None
            pending, first = decoder.getstate()
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as error:
                where = (consumed, pending, first, data)
                raise _decoding_error(path, encoding, codec, error, where, hint) from None
            except UnicodeError as error:  # a codec's own complaint about the stream as a whole
                raise TextgenError(f"{path} is not valid {encoding}: {error}") from None
            consumed += len(data)
            nul = text.find("\x00")
            if nul >= 0:
                raise TextgenError(f"{path} looks binary, not text: NUL character at position {decoded + nul}")
            decoded += len(text)
            yield newlines.piece(text, final=not data)
            if not data:
                return


def _decoding_error(path, encoding, codec, error, where, hint):
    """The one line for a bad byte, at its offset in the file (as if the file had been decoded whole)."""
    consumed, pending, first, data = where  # bytes decoded before this read, the decoder's state, the read
    # error.start counts in (pending + data), after a BOM utf-8-sig strips in this call.
    stripped = 3 if codec == "utf-8-sig" and first and (pending + data).startswith(_UTF8_BOM) else 0
    offset = consumed - len(pending) + error.start + stripped
    bad_byte = error.object[error.start : error.start + 1].hex()
    return TextgenError(
        f"{path} is not valid {'utf-8' if codec == 'utf-8-sig' else encoding}: byte 0x{bad_byte} at "
        f"offset {offset} ({hint})"
    )


def read_file(path, *, encoding="utf-8", errors="strict"):
    """One file's normalized text; a clear ``TextgenError`` for anything that is not text."""
    return "".join(iter_file_text(path, encoding=encoding, errors=errors))


def resolve_sources(sources, *, tfds_data_dir=None, tfds_download=False, follow_links=False, skipped=None):
    """Files named by the sources, in a stable order, and a default model name.

    A ``tfds:`` source stands in the list as a tfds_source.TfdsSource, read
    where a file would be. A symbolic link named as a source is followed (the
    user chose it); inside a directory see corpus_directory.directory_files.
    """
    files, names = [], []
    for source in sources:
        if is_tfds_source(source):
            files.append(TfdsSource(source, data_dir=tfds_data_dir, download=tfds_download))
            names.append(files[-1].name)
            continue
        path = Path(source)
        if path.is_symlink() and not path.exists():
            raise TextgenError(f"{source} is a broken symbolic link or a symbolic link loop")
        if path.is_dir():
            files.extend(directory_files(path, follow_links=follow_links, skipped=skipped))
            names.append(path.resolve().name)
        elif path.is_file():
            files.append(path)
            names.append(path.stem)
        elif source in NAMED_CORPORA:
            files.extend(NAMED_CORPORA[source]())
            names.append(source)
        elif glob.has_magic(source):
            matches = [Path(match) for match in sorted(glob.glob(source, recursive=True)) if Path(match).is_file()]
            if not matches:
                raise TextgenError(f"no files match {source!r}")
            files.extend(matches)
            names.append(Path(source).parent.name or "corpus")
        elif path.exists():
            raise TextgenError(f"{source} is not a regular file or directory")
        else:
            known = ", ".join(NAMED_CORPORA)
            raise TextgenError(f"no such file, directory or built-in corpus: {source!r} (built-in: {known})")
    return files, names[0]


def iter_corpus_text(files, config, *, hint=DECODING_HINT):
    """The whole corpus's text in pieces: the files in order, each ending with a line end.

    Joining the pieces gives the corpus text exactly: a file that is empty or
    only whitespace is left out (and is an error when it is the only one or all
    are), and one newline is added after a file that does not end with one.
    Nothing holds more than a piece at a time, except the leading whitespace of
    a file, held until the file shows it is not blank.
    """
    kept = 0
    for path in files:
        held, last = [], ""  # the file's whitespace so far, while it may still be blank
        if isinstance(path, TfdsSource):
            pieces = path.pieces(errors=config.errors)  # UTF-8 records, normalized, each ending in a blank line
        else:
            pieces = iter_file_text(path, encoding=config.encoding, errors=config.errors, hint=hint)
        for piece in pieces:
            if not piece:
                continue
            last = piece[-1]
            if held is not None and not piece.strip():
                held.append(piece)
                continue
            if held is not None:  # the first text of the file: it is kept
                yield from held
                held = None
            yield piece
        if held is not None:  # blank from start to end
            if len(files) == 1:
                raise TextgenError(f"{path} is empty or only whitespace")
            continue
        kept += 1
        if last != "\n":
            yield "\n"
    if not kept:
        raise TextgenError(f"the corpus {', '.join(config.sources)} is empty or only whitespace")


def resolve_corpus_sources(config, *, skipped=None):
    """``resolve_sources`` for a ``CorpusConfig``: its sources with its TFDS and link settings."""
    return resolve_sources(
        config.sources,
        tfds_data_dir=config.tfds_data_dir,
        tfds_download=config.tfds_download,
        follow_links=config.follow_links,
        skipped=skipped,
    )


def read_corpus(config, resolved=None):
    """Read every source of a ``CorpusConfig`` into one normalized ``Corpus`` (iter_corpus_text, joined).

    ``resolved``: what ``resolve_sources`` returned for the same sources, when the caller already asked.
    """
    files, name = resolved or resolve_corpus_sources(config)
    text = "".join(iter_corpus_text(files, config))
    return Corpus(text=text, files=tuple(str(path) for path in files), name=name)


def split_train_validation(sequence, validation_fraction):
    """The contiguous head for training and tail for validation.

    A contiguous tail (not random windows) keeps validation text unseen: random
    windows would overlap the training windows and flatter the loss.
    """
    cut = len(sequence) - int(round(len(sequence) * validation_fraction))
    return sequence[:cut], sequence[cut:]
