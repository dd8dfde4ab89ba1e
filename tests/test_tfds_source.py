"""tfds: sources: TensorFlow Datasets splits read as a corpus, offline, from a data directory built here."""

import subprocess
import sys

import pytest
from conftest import make_text

from textgen.config import CorpusConfig, TokenizerConfig
from textgen.data import token_store
from textgen.data.corpus import read_corpus, resolve_corpus_sources
from textgen.errors import TextgenError

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

RECORDS = [make_text(lines=30, seed=1), "  \n", "A record without a line end", "Windows\r\nline ends\r\n" * 20]


def store_dataset(data_dir, name, records, features=None, **extra):
    """Write records as a prepared TFDS dataset (what `tfds build` leaves), in order, offline."""
    columns = {"text": records, **extra}
    features = features or {"text": tfds.features.Text(), **{key: tf.int64 for key in extra}}
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name,
        version="1.0.0",
        features=tfds.features.FeaturesDict(features),
        split_datasets={"train": tf.data.Dataset.from_tensor_slices(columns)},
        data_dir=str(data_dir),
        disable_shuffling=True,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tfds")
    store_dataset(directory, "local_notes", RECORDS, number=list(range(len(RECORDS))))
    two_texts = {"title": tfds.features.Text(), "text": tfds.features.Text()}
    store_dataset(directory, "two_texts", ["a b c\n"] * 3, two_texts, title=["t\n"] * 3)
    return directory


def corpus_config(source, data_dir, **settings):
    return CorpusConfig(sources=(source,), tfds_data_dir=str(data_dir), **settings)


def test_records_are_read_in_order_each_ending_in_a_blank_line(data_dir):
    corpus = read_corpus(corpus_config("tfds:local_notes", data_dir))
    expected = (
        RECORDS[0]
        + "\n"  # ends with a line end already: then one blank line
        + "A record without a line end\n\n"  # the whitespace-only record is left out
        + "Windows\nline ends\n" * 20
        + "\n"
    )
    assert corpus.text == expected and corpus.name == "local_notes"


def test_the_token_store_keys_on_the_prepared_files_and_names_the_split(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTGEN_CACHE", str(tmp_path / "cache"))
    config = corpus_config("tfds:local_notes:train[:1]#text", data_dir)
    stored, tokenizer, ids = token_store.open_token_store(
        config, TokenizerConfig(level="word"), resolved=resolve_corpus_sources(config)
    )
    assert tokenizer.decode(ids) == RECORDS[0] + "\n"
    assert stored.files == ("tfds:local_notes:train[:1]#text",)
    assert stored.describe()["read_from"][0].startswith("tfds:local_notes:train[:1]#text (")
    built = []
    original = token_store._build
    monkeypatch.setattr(token_store, "_build", lambda *args: built.append(1) or original(*args))
    token_store.open_token_store(config, TokenizerConfig(level="word"), resolved=resolve_corpus_sources(config))
    assert built == []  # the same prepared files: reused


@pytest.mark.parametrize(
    "source, message",
    [
        ("tfds:bad name", "spell it tfds:NAME[/CONFIG][:SPLIT][#FEATURE]"),
        ("tfds:no_such_dataset_here", "no TFDS dataset 'no_such_dataset_here'"),
        ("tfds:local_notes:test", "Unknown split 'test'"),
        ("tfds:local_notes#number", "no text feature 'number' (text features: text)"),
        ("tfds:two_texts", "has 2 text features (text, title); name one with #FEATURE"),
        # Known to TFDS but not prepared here: no download without --tfds-download, and the command to run.
        ("tfds:tiny_shakespeare", "add --tfds-download to download it, or run `tfds build tiny_shakespeare --data_dir"),
    ],
)
def test_bad_tfds_sources_fail_in_one_line(data_dir, source, message):
    with pytest.raises(TextgenError, match=None) as raised:
        read_corpus(corpus_config(source, data_dir))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_record_that_is_not_utf8_is_named_or_replaced(tmp_path):
    store_dataset(
        tmp_path,
        "raw_bytes",
        [b"good text\n", b"bad \xff byte\n"],
        {"text": tfds.features.Tensor(shape=(), dtype=tf.string)},
    )
    with pytest.raises(TextgenError, match=r"tfds:raw_bytes:train#text: record 1 is not valid UTF-8 at byte 4"):
        read_corpus(corpus_config("tfds:raw_bytes", tmp_path))
    assert read_corpus(corpus_config("tfds:raw_bytes", tmp_path, errors="replace")).text.endswith("bad \ufffd byte\n\n")


@pytest.mark.slow
def test_train_on_a_tfds_source_then_sample_and_info(data_dir, tmp_path):
    def textgen(*arguments):
        return subprocess.run(
            [sys.executable, "-m", "textgen", *arguments], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )

    trained = textgen(
        "train",
        "tfds:local_notes",
        "--tfds-data-dir",
        data_dir,
        "--epochs",
        "1",
        "--layers",
        "1",
        "--units",
        "16",
        "--seq-length",
        "20",
        "--batch-size",
        "8",
    )
    assert trained.returncode == 0, trained.stderr
    assert "saved_models/local_notes" in trained.stdout and trained.stderr.count("\n") <= 1  # no TFDS chatter
    info = textgen("info", "saved_models/local_notes")
    assert "read_from=['tfds:local_notes:train#text (" in info.stdout
    sampled = textgen("sample", "saved_models/local_notes", "--length", "20", "--seed", "1")
    assert sampled.returncode == 0 and len(sampled.stdout) >= 20


@pytest.mark.slow
def test_sigterm_ends_a_download_that_hangs_at_once(tmp_path):
    # A proxy that accepts and never answers: the download hangs as it does on a network that drops
    # packets (TFDS retries such a server for minutes), whatever network this machine has.
    import os
    import signal
    import socket
    import time

    with socket.create_server(("127.0.0.1", 0)) as silent_proxy:
        address = f"http://127.0.0.1:{silent_proxy.getsockname()[1]}"
        environment = {**os.environ, "HTTPS_PROXY": address, "HTTP_PROXY": address, "NO_PROXY": ""}
        environment.pop("https_proxy", None)
        command = [sys.executable, "-m", "textgen", "train", "tfds:tiny_shakespeare", "--tfds-download"]
        command += ["--tfds-data-dir", str(tmp_path / "tfds"), "--epochs", "1"]
        process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, text=True)
        try:
            line = process.stdout.readline()
            assert line == "downloading and preparing tfds:tiny_shakespeare; Ctrl-C or SIGTERM stops it at once\n"
            time.sleep(3)  # well into the download, waiting on the proxy
            assert process.poll() is None
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        finally:
            process.kill()
        assert time.monotonic() - started < 2 and process.returncode == -signal.SIGTERM  # 143 in a shell
