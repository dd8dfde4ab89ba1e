"""Faults injected into real training runs: each must lose no good model and end in one line.

SIGKILL before a run's first save and mid-run, SIGTERM in the first second,
a run that raises or diverges on ``--overwrite``, a full disk, two trainers
of one name. Whole ``textgen`` processes where the fault is a process's
death; the library (``textgen.train``) where a callback injects it.
"""

import json
import math
import shutil
import signal
import subprocess
import sys
import time

import keras
import pytest
from click.testing import CliRunner
from conftest import SMALL, make_text, quiet, train_small

from textgen.cli import main
from textgen.errors import TextgenError
from textgen.saved.saved_model import load_saved_model

SMALL_NETWORK = ["--units", "16", "--seq-length", "20", "--batch-size", "4", "--precision", "float32"]


@pytest.fixture
def good_model(tmp_path, monkeypatch):
    """A trained model at ./saved_models/poem and its corpus; the test runs in tmp_path."""
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "poem.txt"
    corpus.write_text(make_text(lines=200))
    train_small(corpus, tmp_path / "saved_models", name="poem")
    return tmp_path / "saved_models" / "poem", corpus


def fingerprint(directory):
    """Every file of a model directory (logs aside) and its bytes."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "logs" not in path.parts
    }


def start(*arguments, cwd):
    command = [sys.executable, "-m", "textgen", "train", *map(str, arguments), *SMALL_NETWORK]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(process, text, timeout=120):
    """Read the process's lines until one holds ``text``; the lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    raise AssertionError(f"never printed {text!r}: {''.join(lines)}")


class Fault(keras.callbacks.Callback):
    """Injects a fault at a training step: an exception, or NaN weights."""

    def __init__(self, step, kind):
        super().__init__()
        self.step, self.kind = step, kind

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.step and self.kind == "exception":
            raise RuntimeError("a bug in the middle of training")
        if batch + 1 >= self.step and self.kind == "nan":
            self.model.layers[-1].kernel.assign(self.model.layers[-1].kernel * math.nan)


@pytest.mark.parametrize("kind", ["exception", "nan"])
def test_an_overwrite_that_fails_keeps_the_old_model(good_model, kind):
    directory, corpus = good_model
    before = fingerprint(directory)
    with pytest.raises((RuntimeError, TextgenError)) as raised:
        train_small(corpus, directory.parent, name="poem", overwrite=True, units=12, callbacks=[Fault(3, kind)])
    if kind == "nan":
        assert "diverged" in str(raised.value) and "previous model in" in str(raised.value)
    assert fingerprint(directory) == before
    assert sorted(path.name for path in directory.parent.iterdir()) == [".poem.lock", "poem"]


def test_an_overwrite_replaces_the_model_when_the_new_one_is_saved(good_model):
    directory, corpus = good_model
    result = train_small(corpus, directory.parent, name="poem", overwrite=True, units=12)
    assert load_saved_model(directory).model.units == 12 and result.directory == directory
    assert sorted(path.name for path in directory.parent.iterdir()) == [".poem.lock", "poem"]


def test_a_full_disk_is_one_line_and_the_old_model_stays(good_model, monkeypatch):
    from textgen.saved import atomic

    directory, corpus = good_model
    before = fingerprint(directory)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 5000, 5000))
    result = CliRunner().invoke(main, ["train", str(corpus), "--name", "poem", "--overwrite", *SMALL_NETWORK])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: no space left on the device while writing") and "intact" in last
    assert fingerprint(directory) == before


@pytest.mark.slow
def test_sigkill_of_an_overwrite_before_its_first_save_loses_nothing(good_model, tmp_path):
    directory, _ = good_model
    before = fingerprint(directory)
    long_corpus = tmp_path / "long.txt"
    long_corpus.write_text(make_text(lines=3000))
    process = start(long_corpus, "--name", "poem", "--overwrite", cwd=tmp_path)
    wait_for(process, "watch it learn")
    time.sleep(1)
    process.kill()
    process.wait()
    assert fingerprint(directory) == before  # the reader's view is the old model, whole
    assert CliRunner().invoke(main, ["sample", "--length", "20"]).exit_code == 0  # and `sample` picks it
    train_small(long_corpus, directory.parent, name="poem", overwrite=True, units=12, epochs=1)
    assert sorted(path.name for path in directory.parent.iterdir()) == [".poem.lock", "poem"]


@pytest.mark.slow
def test_sigkill_mid_run_leaves_whole_files_and_a_run_that_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "long.txt"
    corpus.write_text(make_text(lines=3000))
    directory = tmp_path / "saved_models" / "long"
    for delay in (0.0, 2.5):
        shutil.rmtree(directory, ignore_errors=True)
        process = start(corpus, "--name", "long", "--checkpoint-every", "50", "--epochs", "3", cwd=tmp_path)
        wait_for(process, "watch it learn")
        time.sleep(delay)
        process.kill()
        process.wait()
        for name in ("config.json", "tokenizer.json", "backup.json", "metrics.json"):
            if (directory / name).exists():
                json.loads((directory / name).read_text())  # whole, never half-written
        resumed = CliRunner().invoke(
            main, ["train", str(corpus), "--name", "long", "--resume", "--epochs", "1", "--time-budget", "3s"]
        )
        if (directory / "backup.json").exists():
            assert resumed.exit_code == 0, resumed.output
            assert "resuming at global step" in resumed.output
        else:  # killed before its first backup: one line that says what to do
            assert resumed.exit_code == 1 and resumed.output.count("\n") == 1, resumed.output


@pytest.mark.slow
def test_sigterm_in_the_first_second_is_one_line(tmp_path):
    corpus = tmp_path / "notes.txt"
    corpus.write_text(make_text(lines=300))
    for delay in (0.3, 1.0, 2.0):
        process = start(corpus, "--name", "notes", "--overwrite", cwd=tmp_path)
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
        assert process.returncode in (0, 143), output  # 0: it finished before the signal came
        assert "Traceback" not in output, output
        if process.returncode == 143:
            assert output.strip().splitlines()[-1].startswith(("Terminated;", "stopped by SIGTERM")), output


@pytest.mark.slow
def test_a_second_trainer_of_the_same_name_is_refused(tmp_path):
    corpus = tmp_path / "long.txt"
    corpus.write_text(make_text(lines=3000))
    first = start(corpus, "--name", "same", "--epochs", "50", cwd=tmp_path)
    wait_for(first, "epoch 1:")  # a model saved, and training's signal handling in place
    try:
        for extra in (SMALL_NETWORK, ["--overwrite", *SMALL_NETWORK], ["--resume"]):
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(tmp_path)
                result = CliRunner().invoke(main, ["train", str(corpus), "--name", "same", *extra])
            assert result.exit_code == 1, result.output
            assert f"is being trained by process {first.pid}" in result.output, result.output
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143
    assert load_saved_model(tmp_path / "saved_models" / "same").read_weights()  # one run's whole model


def test_a_run_killed_before_saving_anything_does_not_block_its_name(tmp_path):
    corpus = tmp_path / "notes.txt"
    corpus.write_text(make_text(lines=200))
    abandoned = tmp_path / "saved_models" / "notes"
    abandoned.mkdir(parents=True)
    (abandoned / "config.json").write_text("{}")  # what a run killed in its first second leaves
    result = CliRunner().invoke(main, ["info", str(abandoned)])
    assert result.exit_code == 1 and "stopped before it saved anything; train it again" in result.output
    train_small(corpus, abandoned.parent, name="notes", echo=quiet, **{**SMALL, "epochs": 1})
    assert load_saved_model(abandoned).read_weights()


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A 3 MB tmpfs as the working directory (root only; skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    monkeypatch.chdir(disk)
    try:
        yield disk
    finally:
        monkeypatch.undo()
        subprocess.run(["umount", str(disk)], check=True)  # busy if a failed run left a file open


@pytest.mark.parametrize("free_space_check", [True, False])
def test_a_real_full_disk_keeps_the_old_model(small_disk, monkeypatch, free_space_check):
    from textgen.saved import atomic

    corpus = small_disk / "poem.txt"
    corpus.write_text(make_text(lines=150))
    train_small(corpus, small_disk / "saved_models", name="poem", units=16)
    directory = small_disk / "saved_models" / "poem"
    before = fingerprint(directory)
    if not free_space_check:  # the write itself meets the full disk
        monkeypatch.setattr(atomic, "check_free_space", lambda path, needed: None)
    network = ["--units", "256", "--seq-length", "20", "--batch-size", "8", "--epochs", "1", "--precision", "float32"]
    result = CliRunner().invoke(main, ["train", str(corpus), "--name", "poem", "--overwrite", *network])
    assert result.exit_code == 1 and "Error: no space left on the device" in result.output, result.output
    assert fingerprint(directory) == before
    assert sorted(path.name for path in directory.parent.iterdir()) == [".poem.lock", "poem"]
