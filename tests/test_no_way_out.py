"""No way out, no way to hang: links, FIFOs, lying sizes, pasted commands and misleading messages.

Each test is one class of what a hostile directory or a clumsy user can do
(issue 23); each failed on the code before the fix it checks.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc

import pytest
from click.testing import CliRunner
from conftest import make_text, quiet, run_textgen, train_small

from textgen.cli import main
from textgen.errors import TextgenError

CLI_SMALL = ["--units", "8", "--embedding-dim", "4", "--layers", "1", "--seq-length", "20", "--batch-size", "8"]
CLI_SMALL += ["--epochs", "1", "--precision", "float32"]


def one_line_error(process):
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: "), process.stderr
    return lines[0]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text(make_text(lines=120))
    return path


# --- writes outside through a symbolic link ---------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "dangling"])
def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path, corpus, dangling):
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text("precious\n")
    (tmp_path / "saved_models").mkdir()
    (tmp_path / "saved_models" / ".notes.lock").symlink_to(victim)
    error = one_line_error(run_textgen("train", corpus, *CLI_SMALL, cwd=tmp_path))
    assert "is a symbolic link" in error
    assert victim.read_text() == "precious\n" if not dangling else not victim.exists()


def test_a_model_whose_logs_lead_elsewhere_is_not_written_through(tmp_path, corpus):
    result = train_small(corpus, tmp_path / "saved_models", name="notes", checkpoint_every=5)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(result.directory / "logs")
    (result.directory / "logs").symlink_to(elsewhere)
    import textgen

    with pytest.raises(TextgenError, match="a symbolic link leads it out of"):  # --resume takes the saved settings
        textgen.train(corpus, root=tmp_path / "saved_models", name="notes", resume=True, epochs=2, echo=quiet)
    assert list(elsewhere.iterdir()) == []


# --- reads outside through a symbolic link ----------------------------------------------------------


def test_a_corpus_directory_skips_links_that_leave_it_and_says_so(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is swordfish\n" * 50)
    folder = tmp_path / "repository"
    folder.mkdir()
    (folder / "a.txt").write_text(make_text(lines=120))
    (folder / "b.txt").symlink_to(secret)
    (folder / "c.txt").symlink_to(folder / "a.txt")  # a link that stays inside is read
    lines = []
    result = train_small(folder, tmp_path / "saved_models", echo=lines.append)
    notes = [line for line in lines if "symbolic link" in line]
    assert len(notes) == 1 and "b.txt" in notes[0] and "--follow-links" in notes[0]
    config = (result.directory / "config.json").read_text()
    assert "secret" not in config and "b.txt" not in config and "c.txt" in config
    followed = train_small(folder, tmp_path / "saved_models", name="followed", follow_links=True)
    assert "b.txt" in (followed.directory / "config.json").read_text()


def test_a_symlink_named_on_the_command_line_is_followed(tmp_path, corpus):
    link = tmp_path / "chosen.txt"
    link.symlink_to(corpus)
    assert train_small(link, tmp_path / "saved_models").directory.name == "chosen"


# --- hangs --------------------------------------------------------------------------------------------


def test_a_fifo_as_the_lock_file_is_refused_at_once(tmp_path, corpus):
    (tmp_path / "saved_models").mkdir()
    os.mkfifo(tmp_path / "saved_models" / ".notes.lock")
    error = one_line_error(run_textgen("train", corpus, *CLI_SMALL, cwd=tmp_path, timeout=60))
    assert "not a regular file" in error


def test_a_fifo_in_the_token_cache_is_a_damaged_store_not_a_hang(tmp_path, corpus, monkeypatch):
    from textgen.config import CorpusConfig, TokenizerConfig
    from textgen.data.corpus import resolve_sources
    from textgen.data.token_store import open_token_store

    monkeypatch.setenv("TEXTGEN_CACHE", str(tmp_path / "cache"))
    config = CorpusConfig(sources=(str(corpus),))
    _, _, ids = open_token_store(config, TokenizerConfig(), resolved=resolve_sources(config.sources))
    store = ids.path.parent
    ids.path.unlink()
    os.mkfifo(ids.path)
    with pytest.raises(TextgenError, match="was damaged and is removed"):
        open_token_store(config, TokenizerConfig(), resolved=resolve_sources(config.sources))
    assert not store.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda store: (store / "manifest.json").write_text("{not json"),
        lambda store: (store / "manifest.json").write_text("[1, 2]"),
        lambda store: (store / "ids.bin").write_bytes(b"\xff" * (store / "ids.bin").stat().st_size),
    ],
    ids=["bad JSON", "a list manifest", "ids past the vocabulary"],
)
def test_a_damaged_token_cache_is_removed_in_one_line(tmp_path, corpus, monkeypatch, damage):
    from textgen.config import CorpusConfig, TokenizerConfig
    from textgen.data.corpus import resolve_sources
    from textgen.data.token_store import open_token_store

    monkeypatch.setenv("TEXTGEN_CACHE", str(tmp_path / "cache"))
    config = CorpusConfig(sources=(str(corpus),))
    _, _, ids = open_token_store(config, TokenizerConfig(), resolved=resolve_sources(config.sources))
    damage(ids.path.parent)
    with pytest.raises(TextgenError, match="was damaged and is removed"):
        open_token_store(config, TokenizerConfig(), resolved=resolve_sources(config.sources))
    _, _, rebuilt = open_token_store(config, TokenizerConfig(), resolved=resolve_sources(config.sources))
    assert len(rebuilt) == len(ids)


def test_a_signal_ends_a_native_wait_at_once(tmp_path):
    # time.sleep stands for a call that waits in C++ holding the interpreter: no Python handler could run.
    script = (
        "import signal, time\n"
        "from textgen.interruptible import native_wait\n"
        "signal.signal(signal.SIGTERM, lambda number, frame: None)  # a Python handler, as textgen's CLI has\n"
        "with native_wait('waiting for the cluster'):\n"
        "    time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "waiting for the cluster; Ctrl-C or SIGTERM stops it at once\n"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)
    assert time.monotonic() - started < 2 and process.returncode == -signal.SIGTERM  # 143 in a shell


@pytest.mark.slow
@pytest.mark.parametrize(
    ("number", "exit_code", "word"), [(signal.SIGINT, 130, "Interrupted"), (signal.SIGTERM, 143, "Terminated")]
)
def test_a_signal_ends_a_multi_worker_run_waiting_for_a_missing_worker(tmp_path, corpus, number, exit_code, word):
    # Before the rendezvous (hardware/rendezvous.py) SIGTERM went to TensorFlow's preemption handler,
    # which logged it and went on waiting, here for 300 s.
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    cluster = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]}, "task": {"type": "worker", "index": 0}}
    environment = {**os.environ, "TF_CONFIG": json.dumps(cluster), "TEXTGEN_CLUSTER_TIMEOUT": "300"}
    process = subprocess.Popen(
        [sys.executable, "-m", "textgen", "train", str(corpus), "--strategy", "multi-worker", *CLI_SMALL],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in process.stdout:  # TensorFlow loads, then the worker waits for worker 1, which never comes
            if "Ctrl-C or SIGTERM stops it at once" in line:
                break
        time.sleep(2)
        started = time.monotonic()
        process.send_signal(number)
        _, error = process.communicate(timeout=60)
    finally:
        process.kill()
    assert time.monotonic() - started < 5 and process.returncode == exit_code, error[-2000:]
    assert error.strip().splitlines() == [f"{word}; what was saved before is intact."]


# --- memory bombs -------------------------------------------------------------------------------------


def test_reads_grow_with_the_file_not_with_the_cap(tmp_path):
    from textgen.safe_files import read_bounded

    path = tmp_path / "small.json"
    path.write_bytes(b"x" * 100_000)
    tracemalloc.start()
    data = read_bounded(path, 1 << 34)  # a 16 GB cap: allocating it up front would fail or swap
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(data) == 100_000 and peak < 10 * 100_000


def test_a_sparse_weights_file_larger_than_its_config_allows_is_refused_unread(tiny_model, tmp_path):
    from textgen.saved.saved_model import load_saved_model

    directory = tmp_path / "model"
    shutil.copytree(tiny_model[0], directory)
    os.truncate(directory / "model.keras", 3 << 30)  # 3 GB that take no disk
    tracemalloc.start()
    with pytest.raises(TextgenError, match="more than a model of its config.json holds"):
        load_saved_model(directory).read_weights()
    assert tracemalloc.get_traced_memory()[1] < 50 << 20
    tracemalloc.stop()


def test_a_config_describing_a_giant_network_is_refused_before_anything_is_read(tiny_model, tmp_path):
    from textgen.saved.saved_model import load_saved_model

    directory = tmp_path / "model"
    shutil.copytree(tiny_model[0], directory)
    config = json.loads((directory / "config.json").read_text())
    config["model"].update(units=8192, layers=16)  # ~4 billion parameters: the archive "may" be 50 GB
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(TextgenError, match="parameters; textgen reads at most"):
        load_saved_model(directory).read_weights()


def test_a_global_step_past_any_run_is_refused(tiny_model, tmp_path):
    from textgen.saved.backup import read_backup

    directory = tmp_path / "model"
    shutil.copytree(tiny_model[0], directory)
    backup = json.loads((directory / "backup.json").read_text())
    (directory / "backup.json").write_text(json.dumps({**backup, "global_step": 10**12}))
    with pytest.raises(TextgenError, match="global_step 1,000,000,000,000 is past"):
        read_backup(directory)


# --- injection through a printed command -----------------------------------------------------------


def test_printed_commands_quote_every_argument(tiny_model, tmp_path):
    from textgen.saved.saved_model import load_saved_model, resume_command

    name = "evil;touch${IFS}PWNED;#"
    directory = tmp_path / "saved_models" / name
    shutil.copytree(tiny_model[0], directory)
    command = resume_command(load_saved_model(directory))
    words = shlex.split(command.split(" && ")[-1])
    assert words[words.index("--name") + 1] == name
    subprocess.run(["sh", "-c", command.replace("textgen train", "true")], cwd=tmp_path, check=True)
    assert not (tmp_path / "PWNED").exists()


# --- messages that name their source ---------------------------------------------------------------


def test_a_bad_value_in_config_json_names_the_file_and_the_field(tiny_model, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(tiny_model[0], directory)
    config = json.loads((directory / "config.json").read_text())
    config["train"]["seq_length"] = 0
    (directory / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["info", str(directory)])
    assert result.exit_code == 1
    assert f'{directory / "config.json"}\'s "train": seq_length must be' in result.output


def test_evaluate_suggests_only_what_evaluate_has(tiny_model, tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 20)
    result = CliRunner().invoke(main, ["evaluate", str(tiny_model[0]), str(latin)])
    assert result.exit_code == 1 and "not valid utf-8" in result.output
    assert "--encoding" not in result.output and "--errors" not in result.output
    assert "evaluate reads files the same way" in result.output


def test_the_free_space_refusal_says_what_it_needs_and_has(tmp_path, monkeypatch):
    from textgen.saved import atomic

    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 5000, 5000))
    with pytest.raises(TextgenError, match=r"needs about 139,264 bytes \(the file and a margin of 1,048,576\), 5,000"):
        atomic.atomic_write(tmp_path / "x", lambda path: None, expected_bytes=139_264)


@pytest.mark.parametrize("value", ["inf", "nan", "-3", "soon"])
def test_an_endless_cluster_timeout_is_refused(monkeypatch, value):
    from textgen.cluster import cluster_timeout

    monkeypatch.setenv("TEXTGEN_CLUSTER_TIMEOUT", value)
    with pytest.raises(TextgenError, match="must be a number of seconds up to 86,400"):
        cluster_timeout()


def test_a_one_task_cluster_under_multi_worker_is_one_line(monkeypatch):
    from textgen.cluster import plan_distribution
    from textgen.config import TrainConfig

    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})
    )
    with pytest.raises(TextgenError, match="two or more tasks"):
        plan_distribution(TrainConfig(strategy="multi-worker"), gpus=0)


def _cluster_of(ports, index):
    from textgen.cluster import Cluster

    return Cluster(tuple(("worker", i, f"127.0.0.1:{port}") for i, port in enumerate(ports)), "worker", index)


def test_workers_meet_in_python_before_tensorflow_is_asked():
    import socket
    import threading

    from textgen.hardware.rendezvous import wait_for_cluster

    ports = []
    for _ in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    results, listeners = {}, []

    def worker(index):
        try:
            wait_for_cluster(_cluster_of(ports, index), 20, echo=lambda line: None)
            results[index] = "met"
        except TextgenError as error:
            results[index] = str(error)
        # What TensorFlow's server does next: listen on the port, where late workers still knock.
        listeners.append(socket.create_server(("127.0.0.1", ports[index])))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.5)  # they start at different moments, as real workers do
    for thread in threads:
        thread.join(30)
    for listener in listeners:
        listener.close()
    assert results == {0: "met", 1: "met", 2: "met"}


def test_a_missing_worker_is_named_and_a_taken_port_is_one_line():
    import socket

    from textgen.hardware.rendezvous import wait_for_cluster

    with socket.socket() as taken, socket.socket() as unused:
        taken.bind(("0.0.0.0", 0))
        taken.listen()  # another program has this worker's port
        unused.bind(("127.0.0.1", 0))  # bound, never listening: a worker that never starts
        ports = [taken.getsockname()[1], unused.getsockname()[1]]
        with pytest.raises(TextgenError, match=f"could not join the cluster at 127.0.0.1:{ports[0]}: port {ports[0]}"):
            wait_for_cluster(_cluster_of(ports, 0), 5, echo=lambda line: None)
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            ports.append(free.getsockname()[1])  # worker 2's own port, free once closed
        started = time.monotonic()
        with pytest.raises(TextgenError, match=f"within 1 s: no answer from 127.0.0.1:{ports[1]} "):
            wait_for_cluster(_cluster_of(ports, 2), 1, echo=lambda line: None)  # 0 answers (taken), 1 never does
        assert time.monotonic() - started < 3


def test_a_lone_surrogate_in_tokenizer_json_is_one_line(tiny_model, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(tiny_model[0], directory)
    tokenizer = json.loads((directory / "tokenizer.json").read_text())
    tokenizer["vocabulary"][1] = "\ud800"
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))  # ASCII JSON: "\ud800" as an escape
    result = CliRunner().invoke(main, ["sample", str(directory), "--length", "5"])
    assert result.exit_code == 1 and "lone surrogate" in result.output


def test_a_corpus_whose_name_is_not_utf8_trains_and_saves(tmp_path):
    name = os.fsdecode(b"caf\xe9.txt")
    path = tmp_path / name
    path.write_text(make_text(lines=120))
    result = train_small(path, tmp_path / "saved_models", name="cafe")
    config = json.loads((result.directory / "config.json").read_text(encoding="utf-8"))
    assert config["corpus"]["sources"][0].endswith("caf\ufffd.txt")
    assert CliRunner().invoke(main, ["info", str(result.directory)]).exit_code == 0


def test_a_knock_that_connects_to_itself_is_not_an_answer(monkeypatch):
    import socket
    import threading

    from textgen.hardware import rendezvous

    def self_connection(address, timeout=None):
        # What the kernel may do to a knock on a free port: give it that port, and TCP's simultaneous
        # open connects the socket to itself (bind first to make it happen every time).
        made.append(address)
        connection = socket.socket()
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # again after the last one closed
        connection.bind(address)
        connection.connect(address)
        return connection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    made = []
    monkeypatch.setattr(rendezvous.socket, "create_connection", self_connection)
    answered, stop = threading.Event(), threading.Event()
    knocker = threading.Thread(target=rendezvous._knock, args=(f"127.0.0.1:{port}", answered, stop))
    knocker.start()
    time.sleep(0.5)
    stop.set()
    knocker.join(5)
    assert made and not answered.is_set()  # it connected (to itself) and knew it was no peer
