"""Text <-> token ids, at the level of characters or words.

Both tokenizers keep every character of the text: the word tokenizer splits
into words, single punctuation marks and runs of whitespace, so that
``decode(encode(text)) == text`` for any text inside the vocabulary. Tokens
outside a capped vocabulary map to ``<unk>``, which always has id 0 when it
exists. ``to_dict`` / ``tokenizer_from_dict`` round-trip through JSON (saved/
writes the file and its format version).
"""

import collections
import itertools
import re

import numpy as np

from textgen.errors import TextgenError
from textgen.limits import MAX_VOCABULARY

UNKNOWN_TOKEN = "<unk>"

# A word, one punctuation mark or symbol, or a run of whitespace.
_WORD_PATTERN = re.compile(r"\w+|\s+|[^\w\s]")


class Tokenizer:
    """Shared vocabulary logic; subclasses say how text splits into tokens."""

    kind = None  # "char" or "word", set by each subclass

    def __init__(self, vocabulary, *, unknown_token=None, lowercase=False):
        self.vocabulary = list(vocabulary)
        self.unknown_token = unknown_token
        self.lowercase = lowercase
        self._ids = {token: index for index, token in enumerate(self.vocabulary)}
        if len(self._ids) != len(self.vocabulary):
            raise TextgenError("tokenizer vocabulary has duplicate entries")
        if unknown_token is not None and self.vocabulary[:1] != [unknown_token]:
            raise TextgenError("tokenizer's unknown token must be entry 0 of the vocabulary")

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    @property
    def unknown_id(self):
        """The id of ``<unk>``, or None when every token is known."""
        return 0 if self.unknown_token is not None else None

    @classmethod
    def fit(cls, text, *, max_vocab=None, min_count=1, lowercase=False):
        """Learn a vocabulary from text: most frequent first, ties in first-seen order."""
        text = text.lower() if lowercase else text
        return cls.from_counts(
            collections.Counter(cls.split(text)), max_vocab=max_vocab, min_count=min_count, lowercase=lowercase
        )

    @classmethod
    def from_counts(cls, counts, *, max_vocab=None, min_count=1, lowercase=False):
        """``fit`` from token counts (a ``Counter`` in first-seen order), as a streamed corpus gives them."""
        kept = [token for token, count in counts.most_common() if count >= min_count]
        # The word level always keeps <unk> (new text has new words); the char
        # level needs it only when the caps dropped a character.
        needs_unknown = cls.kind == "word" or len(kept) < len(counts)
        if max_vocab is not None:
            kept = kept[: max_vocab - (1 if needs_unknown else 0)]
            needs_unknown = needs_unknown or len(kept) < len(counts)
        if not kept:
            raise TextgenError(f"no token occurs at least --min-count={min_count} times")
        vocabulary = ([UNKNOWN_TOKEN] if needs_unknown else []) + kept
        return cls(vocabulary, unknown_token=UNKNOWN_TOKEN if needs_unknown else None, lowercase=lowercase)

    @staticmethod
    def split(text):
        raise NotImplementedError

    @classmethod
    def token_aligned(cls, pieces):
        """The same text as ``pieces``, cut only between tokens, so each piece splits and encodes on its own.

        Every character is a token, so character pieces are already aligned;
        WordTokenizer moves a word or whitespace run cut in two into the next piece.
        """
        return pieces

    def unknown_tokens(self, text):
        """Distinct tokens of ``text`` outside the vocabulary, in first-seen order."""
        text = text.lower() if self.lowercase else text
        return list(dict.fromkeys(token for token in self.split(text) if token not in self._ids))

    def encode(self, text):
        """Token ids of ``text`` as an int32 array of shape (tokens,)."""
        text = text.lower() if self.lowercase else text
        tokens = self.split(text)
        if self.unknown_token is None:
            missing = [token for token in dict.fromkeys(tokens) if token not in self._ids]
            if missing:
                shown = ", ".join(repr(token) for token in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise TextgenError(f"characters not in the model's vocabulary: {shown}{more}")
            return np.fromiter((self._ids[token] for token in tokens), dtype=np.int32, count=len(tokens))
        # map(dict.get, tokens, repeat(0)) looks each token up in C: twice the speed of a generator.
        return np.fromiter(map(self._ids.get, tokens, itertools.repeat(0)), dtype=np.int32, count=len(tokens))

    def decode(self, ids):
        return "".join(self.vocabulary[int(index)] for index in ids)

    def to_dict(self):
        """The tokenizer as JSON-ready data; ``tokenizer_from_dict`` rebuilds it."""
        return {
            "kind": self.kind,
            "lowercase": self.lowercase,
            "unknown_token": self.unknown_token,
            "vocabulary": self.vocabulary,
        }


class CharTokenizer(Tokenizer):
    """One token per Unicode character (a Chinese character or an emoji is one token)."""

    kind = "char"

    @staticmethod
    def split(text):
        return list(text)

    def encode(self, text):
        # Fast path for long corpora: a code point -> id lookup table in NumPy
        # instead of a Python dict lookup per character.
        if self.unknown_token is not None or len(text) < 10_000:
            return super().encode(text)
        text = text.lower() if self.lowercase else text
        code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        known = np.array([ord(token) for token in self.vocabulary], dtype=np.uint32)
        table = np.full(int(max(code_points.max(), known.max())) + 1, -1, dtype=np.int32)
        table[known] = np.arange(len(known), dtype=np.int32)
        ids = table[code_points]
        if (ids < 0).any():
            return super().encode(text)  # reports the unknown characters
        return ids


class WordTokenizer(Tokenizer):
    """Words, single punctuation marks and whitespace runs, so decoding restores the text."""

    kind = "word"

    @staticmethod
    def split(text):
        return _WORD_PATTERN.findall(text)

    @classmethod
    def token_aligned(cls, pieces):
        # Only a piece's last token can run on into the next piece (the tokens
        # before it already ended at a change of class), so it is held back.
        held = ""
        for piece in pieces:
            text = held + piece
            cut = _last_token_start(text)
            held = text[cut:]
            if cut:
                yield text[:cut]
        if held:
            yield held


# The last token of a text: a run of word characters or of whitespace, or one mark, reaching the end.
_LAST_TOKEN = re.compile(r"(?:\w+|\s+|[^\w\s])\Z")


def _last_token_start(text):
    """Where the last token of ``text`` starts (0 for an empty text)."""
    tail_start = max(0, len(text) - 256)  # searching only the tail keeps this O(1) for a 4 MB piece
    found = _LAST_TOKEN.search(text, tail_start)
    if found and found.start() > tail_start or tail_start == 0:
        return found.start() if found else 0
    return len(text) - len(WordTokenizer.split(text)[-1])  # a token longer than the tail: split it all


TOKENIZERS = {tokenizer.kind: tokenizer for tokenizer in (CharTokenizer, WordTokenizer)}


def _has_lone_surrogate(text):
    return any("\ud800" <= character <= "\udfff" for character in text)


def tokenizer_from_dict(data):
    """Rebuild a tokenizer from ``to_dict``'s data; refuses unknown kinds and malformed vocabularies."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in TOKENIZERS:
        raise TextgenError(f"tokenizer.json has kind {kind!r}; expected one of {', '.join(TOKENIZERS)}")
    vocabulary, unknown_token = data.get("vocabulary"), data.get("unknown_token")
    if not isinstance(vocabulary, list) or not vocabulary or not all(isinstance(t, str) and t for t in vocabulary):
        raise TextgenError("tokenizer.json has no valid vocabulary")
    if len(vocabulary) > MAX_VOCABULARY:
        raise TextgenError(f"tokenizer.json has {len(vocabulary):,} tokens; textgen reads at most {MAX_VOCABULARY:,}")
    if any(not token.isascii() and _has_lone_surrogate(token) for token in vocabulary):
        raise TextgenError("tokenizer.json's vocabulary holds a lone surrogate (\\ud800-\\udfff), which is not text")
    if kind == "char" and any(len(token) != 1 for token in vocabulary if token != unknown_token):
        raise TextgenError("tokenizer.json has a char vocabulary with entries that are not single characters")
    if not isinstance(unknown_token, (str, type(None))) or not isinstance(data.get("lowercase", False), bool):
        raise TextgenError("tokenizer.json has a malformed unknown_token or lowercase entry")
    return TOKENIZERS[kind](vocabulary, unknown_token=unknown_token, lowercase=data.get("lowercase", False))
