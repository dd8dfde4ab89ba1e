"""The token store: the same ids as encoding the text whole, built once, rebuilt when a source changes."""

import os

import numpy as np
import pytest
from conftest import make_text

from textgen.config import CorpusConfig, TokenizerConfig
from textgen.data import corpus as corpus_module
from textgen.data import token_file, token_store
from textgen.data.corpus import read_corpus, resolve_sources
from textgen.data.tokenizer import CharTokenizer, WordTokenizer
from textgen.errors import TextgenError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def sources(tmp_path):
    """Three files: CRLF line ends and no final newline, a whitespace-only one, a BOM and non-ASCII text."""
    (tmp_path / "a.txt").write_bytes(make_text(lines=50).replace("\n", "\r\n").rstrip().encode())
    (tmp_path / "b.txt").write_text("   \n\t\n")
    (tmp_path / "c.txt").write_bytes("\ufeffcafé, naïve — 北京\r".encode() * 40)
    return [str(tmp_path / name) for name in ("a.txt", "b.txt", "c.txt")]


def open_store(paths, **tokenizer_settings):
    config = CorpusConfig(sources=tuple(paths))
    return token_store.open_token_store(
        config, TokenizerConfig(**tokenizer_settings), resolved=resolve_sources(config.sources)
    )


@pytest.mark.parametrize("chunk_bytes", [7, 1 << 22])
def test_the_store_holds_what_encoding_the_whole_text_gives(tmp_path, cache, monkeypatch, chunk_bytes):
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk_bytes)  # 7: CR LF and é split between pieces
    paths = sources(tmp_path)
    whole = read_corpus(CorpusConfig(sources=tuple(paths)))
    expected_tokenizer = CharTokenizer.fit(whole.text)
    corpus, tokenizer, ids = open_store(paths)
    assert tokenizer.vocabulary == expected_tokenizer.vocabulary  # same order, ties included
    np.testing.assert_array_equal(ids, expected_tokenizer.encode(whole.text))
    assert ids.dtype == np.uint8 and isinstance(ids, token_file.TokenFile)
    assert (corpus.sha256, corpus.characters, corpus.name) == (whole.sha256, len(whole.text), whole.name)


@pytest.mark.parametrize("chunk_bytes", [5, 7, 1 << 22])
@pytest.mark.parametrize("settings", [{}, {"max_vocab": 12, "lowercase": True}, {"min_count": 3}])
def test_the_word_level_store_holds_what_encoding_the_whole_text_gives(
    tmp_path, cache, monkeypatch, chunk_bytes, settings
):
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk_bytes)  # words and whitespace runs cut between pieces
    paths = sources(tmp_path)
    (tmp_path / "d.txt").write_text("\n\n   Extraordinarily long_words_and_underscores\t\t" * 30 + "x" * 700)
    paths.append(str(tmp_path / "d.txt"))  # a whitespace run across the file boundary; a 700-letter word
    whole = read_corpus(CorpusConfig(sources=tuple(paths)))
    expected = WordTokenizer.fit(whole.text, **settings)
    corpus, tokenizer, ids = open_store(paths, level="word", **settings)
    assert tokenizer.kind == "word" and tokenizer.vocabulary == expected.vocabulary  # same order, ties included
    np.testing.assert_array_equal(ids, expected.encode(whole.text))
    assert (corpus.sha256, corpus.characters) == (whole.sha256, len(whole.text))


def test_a_second_run_reuses_the_store_and_a_changed_file_rebuilds_it(tmp_path, cache, monkeypatch):
    paths = sources(tmp_path)
    open_store(paths)
    stores = list((cache / "tokens").iterdir())
    assert len(stores) == 1 and (stores[0] / "manifest.json").is_file()
    built = []
    original = token_store._build
    monkeypatch.setattr(token_store, "_build", lambda *args: built.append(1) or original(*args))
    open_store(paths)  # same files, same settings: no rebuild
    open_store(paths, lowercase=True)  # another tokenizer setting: another store
    assert len(built) == 1
    with open(paths[0], "a") as handle:
        handle.write("more text")
    os.utime(paths[0], ns=(1, 1))  # a new size and mtime
    _, _, ids = open_store(paths)
    assert len(built) == 2 and len(list((cache / "tokens").iterdir())) == 3
    assert "more text" in CharTokenizer.fit(read_corpus(CorpusConfig(sources=tuple(paths))).text).decode(ids)


def test_a_damaged_store_is_removed_with_one_line(tmp_path, cache):
    paths = sources(tmp_path)
    open_store(paths)
    store = next((cache / "tokens").iterdir())
    with open(store / "ids.bin", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(TextgenError, match="was damaged and is removed; run again"):
        open_store(paths)
    assert not store.exists()
    open_store(paths)  # rebuilt


def test_a_given_tokenizer_refuses_or_drops_unknown_characters(tmp_path, cache):
    (tmp_path / "new.txt").write_text("abc xyz\n" * 20)
    config = CorpusConfig(sources=(str(tmp_path / "new.txt"),))
    known = CharTokenizer.fit("abc \n")
    with pytest.raises(TextgenError, match="3 characters of the corpus are not in the model's vocabulary"):
        token_store.open_token_store(
            config, TokenizerConfig(), resolved=resolve_sources(config.sources), tokenizer=known
        )
    corpus, tokenizer, ids = token_store.open_token_store(
        config, TokenizerConfig(), resolved=resolve_sources(config.sources), tokenizer=known, drop_unknown=True
    )
    assert tokenizer.decode(ids) == "abc \n" * 20 and corpus.characters == 100


def test_an_unwritable_cache_still_trains_from_a_temporary_store(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the cache would go")
    monkeypatch.setenv("TEXTGEN_CACHE", str(blocker))
    corpus, tokenizer, ids = open_store(sources(tmp_path))
    assert len(ids) == corpus.characters and not str(ids.path).startswith(str(blocker))


def test_a_token_file_reads_slices_and_windows_by_position(tmp_path):
    values = np.arange(1000, dtype=np.uint16) * 7
    values.tofile(tmp_path / "ids.bin")
    ids = token_file.TokenFile(tmp_path / "ids.bin", np.uint16)
    assert len(ids) == 1000
    head, tail = ids[:900], ids[900:]
    assert len(head) == 900 and len(tail) == 100
    np.testing.assert_array_equal(np.asarray(tail), values[900:])
    np.testing.assert_array_equal(np.asarray(tail[10:20]), values[910:920])  # a slice of a slice
    assert len(ids[990:2000]) == 10 and len(ids[500:400]) == 0  # clipped like a list
    starts = np.array([0, 5, 890])
    rows = head.windows(starts, 11)
    assert rows.dtype == np.int32
    np.testing.assert_array_equal(rows, values[starts[:, np.newaxis] + np.arange(11)])
    np.testing.assert_array_equal(tail.windows(np.array([3]), 4), values[np.newaxis, 903:907])
    assert ids[3] == 21 and tail[-1] == values[-1]
    with pytest.raises(IndexError):
        tail[100]
    with pytest.raises(TypeError):
        ids[::2]
