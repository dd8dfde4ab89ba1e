"""Properties checked on generated inputs (hypothesis): what must hold for any text, logits or damaged file."""

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from textgen.data.newlines import normalize_newlines
from textgen.data.tokenizer import CharTokenizer, WordTokenizer
from textgen.errors import TextgenError
from textgen.generation.probabilities import log_softmax
from textgen.generation.strategies import TopK, TopP
from textgen.saved.saved_model import load_saved_model

# Any Unicode text, with what real files hold more often than chance would: astral characters,
# combining marks, every kind of line ending, a BOM.
pieces = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(["\r\n", "\r", "\n", "\ufeff", "\u0301", "\U0001f600", "e\u0301", "\u4e00", " ", "\t"]),
)
texts = st.lists(pieces, max_size=100).map("".join)


@given(texts)
def test_the_char_tokenizer_round_trips_any_text(text):
    tokenizer = CharTokenizer.fit(text or "a")
    assert tokenizer.decode(tokenizer.encode(text)) == text


@given(texts)
def test_the_word_tokenizer_round_trips_any_text(text):
    tokenizer = WordTokenizer.fit(text or "a")
    assert tokenizer.decode(tokenizer.encode(text)) == text


@given(st.lists(texts, max_size=8))
def test_word_pieces_cut_between_tokens_split_as_the_whole_text_does(parts):
    # The token store counts and encodes a streamed corpus piece by piece.
    aligned = list(WordTokenizer.token_aligned(parts))
    assert "".join(aligned) == "".join(parts)
    assert [token for piece in aligned for token in WordTokenizer.split(piece)] == WordTokenizer.split("".join(parts))


@given(texts)
def test_newline_normalization_is_idempotent_and_loses_no_other_character(text):
    normalized = normalize_newlines(text)
    # Idempotent, except that a second BOM (content, not a marker) goes on the second pass.
    assert normalize_newlines(normalized) == normalized or normalized.startswith("\ufeff")
    assert "\r" not in normalized
    without_newlines = text.removeprefix("\ufeff").replace("\r", "").replace("\n", "")
    assert normalized.replace("\n", "") == without_newlines
    assert normalized.count("\n") == text.count("\n") + text.count("\r") - text.count("\r\n")


logit_rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(1, 40)),
    elements=st.floats(-30, 30, allow_nan=False),
)


@given(logit_rows, st.integers(1, 50))
def test_top_k_keeps_exactly_the_k_likeliest(logits, k):
    kept = np.isfinite(TopK(k).process(logits))
    assert (kept.sum(axis=-1) == min(k, logits.shape[-1])).all()
    for row, mask in zip(logits, kept):  # no dropped token is likelier than a kept one
        if (~mask).any():
            assert row[mask].min() >= row[~mask].max()


@given(logit_rows, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_that_reaches_p(logits, p):
    kept = np.isfinite(TopP(p).process(logits))
    probabilities = np.exp(log_softmax(logits))
    for row, mask in zip(probabilities, kept):
        assert row[mask].sum() >= p - 1e-9  # it reaches p
        if mask.sum() > 1:  # and without its least likely token it would not (ties aside)
            assert row[mask].sum() - row[mask].min() < p + 1e-9


@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 300)), elements=st.floats(-80, 80, width=32)))
def test_probabilities_of_float32_logits_sum_to_one(logits):
    probabilities = np.exp(log_softmax(logits))  # computed in float64 (probabilities.py), whatever comes in
    assert probabilities.dtype == np.float64 and (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-12)


@pytest.fixture(scope="module")
def archive_parts(tiny_model):
    """The tiny model's model.keras members and JSON files, to damage."""
    directory = tiny_model[0]
    with zipfile.ZipFile(directory / "model.keras") as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    return directory, members


def damaged(data, data_strategy):
    """``data`` truncated, or with some bytes replaced."""
    if data_strategy.draw(st.booleans()):
        return data[: data_strategy.draw(st.integers(0, len(data)))]
    data = bytearray(data)
    for _ in range(data_strategy.draw(st.integers(1, 8))):
        position = data_strategy.draw(st.integers(0, len(data) - 1))
        data[position] = data_strategy.draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_the_validator_raises_only_textgen_errors_on_damaged_models(archive_parts, tmp_path_factory, data):
    source, members = archive_parts
    directory = tmp_path_factory.mktemp("damaged") / "model"
    shutil.copytree(source, directory, ignore=shutil.ignore_patterns("logs", "backup*"))
    target = data.draw(st.sampled_from(["model.weights.h5", "config.json (archive)", "config.json", "tokenizer.json"]))
    if target in ("config.json", "tokenizer.json"):
        (directory / target).write_bytes(damaged((directory / target).read_bytes(), data))
    else:
        member = target.split(" ")[0]
        changed = {**members, member: damaged(members[member], data)}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in changed.items():
                archive.writestr(name, content)
        (directory / "model.keras").write_bytes(buffer.getvalue())
    try:
        network, _ = load_saved_model(directory).read_weights()
    except TextgenError:
        return
    assert all(np.isfinite(array).all() for array in network.arrays)  # read: then whole and checked


@settings(max_examples=40, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=8,
    )
)
def test_any_json_in_metrics_or_backup_is_read_or_refused_in_one_error(tmp_path_factory, content):
    from textgen.metrics import epoch_line
    from textgen.saved.backup import read_backup
    from textgen.saved.saved_model import SavedModel

    directory = tmp_path_factory.mktemp("json")
    for name in ("metrics.json", "backup.json"):
        (directory / name).write_text(json.dumps(content))
    try:
        records = SavedModel.metrics(type("Saved", (), {"directory": directory})())
    except TextgenError as error:
        assert "metrics.json" in str(error) and "\n" not in str(error)  # one line that names the file
    else:  # read: then every record is one `textgen info` can print (a KeyError or TypeError if not)
        assert isinstance(records, list)
        for record in records:
            assert epoch_line(record, while_training=False).startswith(f"epoch {record['epoch']}:")
    with pytest.raises(TextgenError):  # a backup needs its weights file, which is never there
        read_backup(directory)


@pytest.fixture(scope="module")
def tiny_generator(tiny_model):
    from textgen import load

    return load(tiny_model[0]), tiny_model[1].read_text()[:400]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 400))
def test_chunked_scoring_equals_whole_scoring_for_any_chunk(tiny_generator, monkeypatch, tokens_per_chunk):
    import math

    from textgen import evaluation

    generator, text = tiny_generator
    ids = generator.tokenizer.encode(text)
    whole = evaluation.score_tokens(generator.engine, ids)
    with monkeypatch.context() as patch:  # score_tokens reads at least 16 tokens per chunk
        patch.setattr(evaluation, "_LOGITS_PER_CHUNK", tokens_per_chunk * generator.engine.vocabulary_size)
        assert math.isclose(evaluation.score_tokens(generator.engine, ids), whole, rel_tol=1e-6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 300))
def test_a_prompt_read_in_pieces_of_any_size_writes_the_same_text(tiny_generator, monkeypatch, piece):
    from textgen.generation import generator as generator_module

    generator, text = tiny_generator
    whole = generator.generate(text[:250], length=20, seed=5, num_samples=2)
    with monkeypatch.context() as patch:
        patch.setattr(generator_module, "PROMPT_CHUNK", piece)
        assert generator.generate(text[:250], length=20, seed=5, num_samples=2) == whole


def whole_file_reading(data, encoding):
    """The text of ``data`` decoded at once, as textgen read files before it read them in pieces."""
    codec = "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as error:
        stripped = 3 if codec == "utf-8-sig" and data.startswith(b"\xef\xbb\xbf") else 0
        return (
            "error",
            f"byte 0x{data[error.start + stripped : error.start + stripped + 1].hex()} at offset "
            f"{error.start + stripped}",
        )
    if "\x00" in text:
        return ("error", f"NUL character at position {text.find(chr(0))}")
    return ("text", normalize_newlines(text))


file_bytes = st.one_of(
    texts.map(lambda text: text.replace("\x00", "").encode("utf-8")),
    st.lists(
        st.sampled_from(
            [
                b"\xef\xbb\xbf",
                b"\r",
                b"\n",
                b"\r\n",
                b"a",
                b"\xc3\xa9",
                b"\xe2\x82\xac",
                b"\xf0\x9f\x98\x80",
                b"\xff",
                b"\xc3",
                b"\x00",
                b" ",
            ]
        ),
        max_size=60,
    ).map(b"".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file_bytes, st.integers(1, 16), st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_reading_in_pieces_of_any_size_equals_reading_whole(tmp_path_factory, data, chunk_bytes, encoding):
    from textgen.data.corpus import iter_file_text

    path = tmp_path_factory.mktemp("chunks") / "file.txt"
    path.write_bytes(data)

    def read(size):
        try:
            return ("text", "".join(iter_file_text(path, encoding=encoding, chunk_bytes=size)))
        except TextgenError as error:
            return ("error", str(error).split(": ", 1)[1].split(" (try")[0])

    in_pieces, at_once = read(chunk_bytes), read(1 << 20)
    expected = whole_file_reading(data, encoding)
    if expected[0] == "text":
        assert in_pieces == at_once == expected  # the same text, whatever the pieces
    else:  # refused either way; which fault is named first (a NUL or a bad byte) may depend on the pieces
        assert in_pieces[0] == at_once[0] == "error"
        if encoding == "utf-8" and "\x00" not in data.decode("utf-8", "replace"):
            assert in_pieces == at_once == expected  # a bad byte alone: the same offset, however it is read
