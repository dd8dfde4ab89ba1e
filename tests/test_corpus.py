import os

import pytest

from textgen.config import CorpusConfig
from textgen.data.corpus import NAMED_CORPORA, read_corpus, read_file, split_train_validation
from textgen.data.newlines import normalize_newlines
from textgen.errors import TextgenError


def read(*sources, **options):
    return read_corpus(CorpusConfig(sources=tuple(str(s) for s in sources), **options))


def test_bom_and_bare_cr_and_crlf_are_normalized(tmp_path):
    path = tmp_path / "messy.txt"
    path.write_bytes("\ufeffone\rtwo\r\nthree\n".encode("utf-8"))
    assert read_file(path) == "one\ntwo\nthree\n"


def test_normalize_newlines_keeps_other_characters():
    assert normalize_newlines("a\r\rb\u2028c") == "a\n\nb\u2028c"


def test_latin1_bytes_fail_with_file_and_offset(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9 au lait")
    with pytest.raises(TextgenError, match=r"latin.txt is not valid utf-8: byte 0xe9 at offset 3"):
        read_file(path)


def test_encoding_and_replace_options_decode_latin1(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9 au lait\n")
    assert read(path, encoding="latin-1").text == "café au lait\n"
    assert read(path, errors="replace").text == "caf\ufffd au lait\n"


def test_nul_bytes_mean_binary(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc\x00def")
    with pytest.raises(TextgenError, match="looks binary"):
        read(path)


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n"])
def test_empty_or_whitespace_file_fails(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(TextgenError, match="empty or only whitespace"):
        read(path)


def test_missing_path_fails_and_lists_built_in_corpora(tmp_path):
    with pytest.raises(TextgenError, match="no such file, directory or built-in corpus.*python-stdlib"):
        read(tmp_path / "nope.txt")


def test_symlink_loop_fails(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(TextgenError, match="symbolic link loop"):
        read(tmp_path / "a")


def test_directory_reads_text_files_in_order_and_skips_binaries(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("second\n")
    (tmp_path / "a.py").write_text("first\n")
    (tmp_path / "sub" / "c.md").write_text("third")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (tmp_path / ".hidden").write_text("never\n")
    corpus = read(tmp_path)
    assert corpus.text == "first\nsecond\nthird\n"
    assert corpus.name == tmp_path.name


def test_directory_without_text_fails(tmp_path):
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00\x00")
    with pytest.raises(TextgenError, match="has no text files"):
        read(tmp_path)


def test_directory_with_symlink_loop_inside_terminates(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    os.symlink(tmp_path, tmp_path / "loop")
    assert read(tmp_path).text == "hello\n"


def test_glob_matches_files(tmp_path):
    (tmp_path / "x1.txt").write_text("one\n")
    (tmp_path / "x2.txt").write_text("two\n")
    (tmp_path / "y.log").write_text("no\n")
    assert read(tmp_path / "x*.txt").text == "one\ntwo\n"
    with pytest.raises(TextgenError, match="no files match"):
        read(tmp_path / "z*.txt")


def test_python_stdlib_is_a_built_in_corpus_of_real_code():
    files = NAMED_CORPORA["python-stdlib"]()
    names = {path.name for path in files}
    assert "os.py" in names and "json" in {path.parent.name for path in files}
    assert not any("test" in path.parts[-2:-1] for path in files)


def test_validation_split_is_the_contiguous_tail():
    train, validation = split_train_validation(list(range(100)), 0.1)
    assert train == list(range(90)) and validation == list(range(90, 100))
    train, validation = split_train_validation(list(range(10)), 0.0)
    assert train == list(range(10)) and validation == []


def test_pieces_split_a_crlf_and_a_character_and_still_read_as_the_whole(tmp_path):
    from textgen.data.corpus import iter_file_text, read_file

    path = tmp_path / "split.txt"
    path.write_bytes(b"\xef\xbb\xbfab\r\ncaf\xc3\xa9\r\rend\r")
    # 5 bytes: the first piece ends with CR, its LF opens the next; 10 bytes: the piece ends inside the é.
    for size in (5, 10, 1, 3):
        pieces = list(iter_file_text(path, chunk_bytes=size))
        assert "".join(pieces) == read_file(path) == "ab\ncafé\n\nend\n"
    assert any(piece.endswith("caf") for piece in iter_file_text(path, chunk_bytes=10))  # é went to the next piece


def test_a_bad_byte_after_a_bom_is_reported_at_its_offset_in_the_file(tmp_path):
    from textgen.data.corpus import iter_file_text

    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfabc\xffdef")
    for size in (1, 2, 4, 1 << 20):
        with pytest.raises(TextgenError, match="byte 0xff at offset 6"):
            list(iter_file_text(path, chunk_bytes=size))


def test_utf16_without_a_bom_reads_in_the_machines_byte_order_as_before(tmp_path):
    import sys

    from textgen.data.corpus import read_file

    path = tmp_path / "utf16.txt"
    path.write_bytes("line one\r\nline two\n".encode("utf-16-le" if sys.byteorder == "little" else "utf-16-be"))
    assert read_file(path, encoding="utf-16") == "line one\nline two\n"
