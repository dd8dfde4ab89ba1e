"""The command line, through click's CliRunner: the happy path and every bad input."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner
from conftest import make_text

from textgen.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


# A network that trains fast, as a real `textgen train` process is given it.
SMALL_NETWORK = "--units 16 --seq-length 20 --batch-size 4 --precision float32"


def textgen_command(*words):
    """A `python -m textgen ...` command line; a str word may hold several space-separated arguments, a path is one."""
    import sys

    return [sys.executable, "-m", "textgen", *(p for w in words for p in (w.split(" ") if isinstance(w, str) else [w]))]


def assert_clean_failure(result, message, code=1):
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, result.output
    assert message in result.output


def bad_inputs(tmp_path):
    """Each bad corpus a user can hand us, made on disk."""
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("  \n\n\t \n")
    (tmp_path / "short.txt").write_text("To be or not.\n")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "binary.dat").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "latin1.txt").write_bytes("Les misérables, encore une fois.\n".encode("latin-1") * 50)
    (tmp_path / "nul.txt").write_bytes(b"text with a\x00NUL byte\n" * 50)
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    os.symlink(tmp_path / "gone", tmp_path / "dangling.txt")
    os.mkfifo(tmp_path / "fifo.txt")  # reading it would wait forever for a writer
    return {
        "fifo.txt": "not a regular file or directory",
        "dangling.txt": "broken symbolic link",
        "/dev/zero": "not a regular file or directory",
        "missing.txt": "no such file",
        "empty.txt": "empty or only whitespace",
        "blank.txt": "empty or only whitespace",
        "short.txt": "too short",
        "nothing": "has no text files",
        "binary.dat": "not valid utf-8",
        "latin1.txt": "byte 0xe9 at offset",
        "nul.txt": "looks binary",
        "loop_a": "symbolic link loop",
    }


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "sample", "evaluate", "info"):
        assert command in result.output


def test_train_help_lists_the_contract_options():
    result = run("train", "--help")
    for option in (
        "--name",
        "--level",
        "--cell",
        "--layers",
        "--units",
        "--embedding-dim",
        "--dropout",
        "--seq-length",
        "--batch-size",
        "--epochs",
        "--learning-rate",
        "--lr-schedule",
        "--precision",
        "--time-budget",
        "--stateful / --stateless",
        "--validation-fraction",
        "--seed",
        "--max-vocab",
        "--min-count",
        "--lowercase",
        "--encoding",
        "--errors",
        "--overwrite",
    ):
        assert option in result.output


def test_every_bad_corpus_fails_in_one_line_and_writes_nothing(in_tmp):
    for name, message in bad_inputs(in_tmp).items():
        result = run("train", in_tmp / name, "--seq-length", 50)
        assert_clean_failure(result, message)
        assert not (in_tmp / "saved_models").exists() or not any((in_tmp / "saved_models").iterdir()), name


@pytest.mark.parametrize(
    "options, message, code",
    [
        (["--time-budget", "soon"], "time budget must look like 90s", 2),
        (["--cell", "transformer"], "Invalid value for '--cell'", 2),
        (["--lr-schedule", "exponential"], "Invalid value for '--lr-schedule'", 2),
        (["--layers", "0"], "layers must be an integer >= 1", 1),
        (["--dropout", "1.5"], "dropout must be in [0, 1)", 1),
        (["--validation-fraction", "0.9"], "validation-fraction must be in [0, 0.5]", 1),
        (["--encoding", "klingon"], "unknown encoding 'klingon'", 1),
        (["--encoding", "rot13"], "'rot13' is not a text encoding", 1),
        (["--encoding", "base64"], "'base64' is not a text encoding", 1),
        (["--name", "notes\n"], "invalid model name", 1),
        (["--name", "../outside"], "invalid model name", 1),
    ],
)
def test_bad_train_options(in_tmp, options, message, code):
    (in_tmp / "notes.txt").write_text(make_text())
    assert_clean_failure(run("train", in_tmp / "notes.txt", *options), message, code)
    assert not (in_tmp / "saved_models").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--temperature", "-1"], "temperature must be in [0, 100]"),
        (["--length", "-5"], "length must be an integer >= 0"),
        (["--num-samples", "0"], "num-samples must be an integer >= 1"),
        (["--prompt", "Жили"], "not in the model's vocabulary"),
    ],
)
def test_bad_sample_options(tiny_model, options, message):
    directory, _ = tiny_model
    assert_clean_failure(run("sample", directory, *options), message)


def test_sampling_limits_are_stated(tiny_model, monkeypatch):
    from textgen.generation import generator

    directory, _ = tiny_model
    assert_clean_failure(run("sample", directory, "--prompt", "a" * 1_000_001), "at most 1,000,000 are read")
    monkeypatch.setattr(generator, "MAX_LOGITS", 1000)  # as a 100k-token vocabulary meets 2,700 samples
    assert_clean_failure(run("sample", directory, "--num-samples", "100"), "samples of this model at once")


def test_a_long_prompt_is_read_in_pieces_with_the_same_result(tiny_model, monkeypatch):
    import textgen
    from textgen.generation import generator

    model = textgen.load(tiny_model[0])
    prompt = "the king and the queen " * 30
    whole = model.generate(prompt, length=40, seed=3, num_samples=2)
    monkeypatch.setattr(generator, "PROMPT_CHUNK", 7)
    assert model.generate(prompt, length=40, seed=3, num_samples=2) == whole


def test_an_output_that_fails_and_a_path_that_is_not_utf8_are_one_line(tiny_model, tmp_path):
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        process = subprocess.run(
            [sys.executable, "-m", "textgen", "sample", str(tiny_model[0]), "--length", "5000"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert process.returncode == 1 and process.stderr.startswith("Error: no space left on the device"), process.stderr
    assert process.stderr.count("\n") == 1
    reader = subprocess.Popen(
        [sys.executable, "-m", "textgen", "sample", str(tiny_model[0]), "--length", "200000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reader.stdout.read(10)
    reader.stdout.close()  # as `textgen sample | head -c 10` does
    _, errors = reader.communicate(timeout=60)
    assert reader.returncode == 1 and errors == b""  # nothing to say: the reader went away
    odd_name = os.fsencode(tmp_path) + b"/notes-\xff.txt"
    with open(odd_name, "wb") as corpus:
        corpus.write(b"caf\xe9 " * 50)  # latin-1, not UTF-8, under a name that is not UTF-8 either
    process = subprocess.run([sys.executable, "-m", "textgen", "train", odd_name], capture_output=True, cwd=tmp_path)
    assert process.returncode == 1 and process.stderr.startswith(b"Error: "), process.stderr
    assert b"notes-\xef\xbf\xbd.txt is not valid utf-8" in process.stderr and process.stderr.count(b"\n") == 1


def test_missing_or_corrupt_model(in_tmp, tiny_model):
    assert_clean_failure(run("sample"), "no saved model under")
    assert_clean_failure(run("sample", in_tmp / "nope"), "no model directory")
    broken = in_tmp / "broken"
    shutil.copytree(tiny_model[0], broken)
    (broken / "model.keras").write_bytes(b"garbage")
    assert_clean_failure(run("sample", broken), "not a readable Keras model archive")
    assert_clean_failure(run("info", in_tmp / "nope"), "no model directory")
    assert_clean_failure(run("evaluate", tiny_model[0], in_tmp / "nope.txt"), "no such file")


def test_sample_evaluate_info(tiny_model):
    directory, corpus = tiny_model
    first = run("sample", directory, "--length", 80, "--seed", 1, "--prompt", "The")
    assert first.exit_code == 0 and first.output.startswith("The") and len(first.output) == 3 + 80 + 1
    assert run("sample", directory, "--length", 80, "--seed", 1, "--prompt", "The").output == first.output
    several = run("sample", directory, "--length", 20, "--num-samples", 2, "--seed", 1)
    assert several.exit_code == 0 and "--- sample 2 of 2 (log-probability" in several.output
    metrics = json.loads(run("evaluate", directory, corpus, "--format", "json").output)
    assert set(metrics) == {"loss", "perplexity", "bits_per_character", "tokens", "characters"}
    assert 0 < metrics["loss"] < 3.5  # trained: better than uniform over the vocabulary
    assert "bits/char" in run("evaluate", directory, corpus).output
    report = json.loads(run("info", directory, "--format", "json").output)
    assert report["global_step"] > 0 and report["parameters"] > 0 and len(report["metrics"]) == 2
    text = run("info", directory).output
    assert "global_step:" in text and "epoch 2:" in text


@pytest.mark.slow
def test_train_then_sample_end_to_end(in_tmp):
    corpus = in_tmp / "poems.txt"
    corpus.write_text(make_text(lines=600))
    result = run(
        "train",
        corpus,
        "--units",
        32,
        "--embedding-dim",
        8,
        "--seq-length",
        40,
        "--batch-size",
        16,
        "--time-budget",
        "4s",
        "--epochs",
        1000,
        "--level",
        "word",
        "--precision",
        "auto",
        "--stateful",
    )
    assert result.exit_code == 0, result.output
    assert "time budget of 4s reached" in result.output
    # Not a terminal: no live progress bar (one ANSI-coloured line per step), just textgen's line per epoch.
    assert "\x1b[" not in result.output and "epoch 1: loss" in result.output
    assert "tensorboard --logdir saved_models/poems/logs" in result.output
    directory = in_tmp / "saved_models" / "poems"
    assert json.loads((directory / "config.json").read_text())["train"]["stateful"] is True
    names = {p.name for p in directory.iterdir()}
    backups = {name for name in names if name.startswith("backup-") and name.endswith(".weights.h5")}
    assert len(backups) == 1 and names - backups == {
        "config.json",
        "tokenizer.json",
        "model.keras",
        "metrics.json",
        "logs",
        "backup.json",
    }
    sample = run("sample", "--length", 30, "--seed", 2)  # the newest model, by default
    assert sample.exit_code == 0 and "<unk>" not in sample.output and len(sample.output) > 30
    again = run("train", corpus, "--time-budget", "1s")
    assert_clean_failure(again, "already exists; pass --overwrite")


@pytest.mark.parametrize(
    "options, message",
    [
        (["--top-k", "0"], "top-k must be an integer >= 1"),
        (["--top-p", "0"], "top-p must be in (0, 1]"),
        (["--top-p", "1.5"], "top-p must be in (0, 1]"),
        (["--beam-width", "0"], "beam-width must be an integer >= 1"),
        (["--beam-width", "5000"], "beam-width must be an integer >= 1 and <= 4096"),
        (["--beam-width", "4000"], "larger than the vocabulary"),
        (["--beam-width", "2", "--num-return", "3"], "num-return must be an integer >= 1 and <= 2"),
        (["--stop", ""], "stop strings must not be empty"),
    ],
)
def test_bad_sampling_strategy_options(tiny_model, options, message):
    assert_clean_failure(run("sample", tiny_model[0], *options), message)


def test_sample_json_and_beams_and_stop(tiny_model):
    directory, _ = tiny_model
    result = run(
        "sample",
        directory,
        "--format",
        "json",
        "--num-samples",
        2,
        "--length",
        30,
        "--seed",
        3,
        "--top-k",
        5,
        "--top-p",
        0.9,
        "--temperature",
        0.7,
        "--prompt",
        "The",
    )
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 2 and all(line["text"].startswith("The") for line in lines)
    assert lines[0]["strategy"] == "random" and lines[0]["settings"]["top_k"] == 5
    assert all(line["log_probability"] < 0 and line["tokens"] == 30 for line in lines)
    beams = run("sample", directory, "--beam-width", 4, "--num-return", 2, "--length", 20, "--format", "json")
    parsed = [json.loads(line) for line in beams.output.splitlines()]
    assert [p["strategy"] for p in parsed] == ["beam", "beam"]
    assert parsed[0]["log_probability"] >= parsed[1]["log_probability"]
    stopped = run("sample", directory, "--length", 300, "--seed", 1, "--stop", " ", "--prompt", "The")
    assert stopped.exit_code == 0 and " " not in stopped.output.strip()
    keras = run("sample", directory, "--engine", "keras", "--temperature", 0, "--length", 30, "--prompt", "The")
    numpy = run("sample", directory, "--engine", "numpy", "--temperature", 0, "--length", 30, "--prompt", "The")
    assert keras.exit_code == 0 and keras.output == numpy.output


@pytest.mark.slow
def test_sigterm_stops_a_real_run_cleanly(in_tmp):
    import signal
    import subprocess
    import time

    corpus = in_tmp / "long.txt"
    corpus.write_text(make_text(lines=3000))
    command = textgen_command("train", corpus, "--epochs 50", SMALL_NETWORK)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=in_tmp)
    for line in process.stdout:  # wait until training runs
        if "watch it learn" in line:
            break
    time.sleep(3)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert time.monotonic() - sent < 15, "SIGTERM must stop training within 15 seconds"
    assert process.returncode == 143, output
    assert "stopped by SIGTERM" in output and "saved the best model" in output
    assert "\x1b[" not in output  # a pipe gets no progress bar
    assert (in_tmp / "saved_models" / "long" / "model.keras").is_file()


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_the_backup(in_tmp):
    import signal
    import subprocess
    import time

    corpus = in_tmp / "long.txt"
    corpus.write_text(make_text(lines=3000))
    command = textgen_command("train", corpus, "--name run --epochs 20 --checkpoint-every 20", SMALL_NETWORK)
    process = subprocess.Popen(command, cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backup = in_tmp / "saved_models" / "run" / "backup.json"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (backup.exists() and json.loads(backup.read_text())["global_step"] >= 60):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # mid-epoch, no chance to clean up
    process.wait()
    killed_at = json.loads(backup.read_text())["global_step"]
    assert killed_at >= 60
    resumed = run("train", corpus, "--name", "run", "--resume", "--time-budget", "3s")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming at global step {killed_at}" in resumed.output
    assert json.loads(backup.read_text())["global_step"] > killed_at  # it trained on from there
    directory = in_tmp / "saved_models" / "run"
    assert not [path.name for path in directory.iterdir() if path.name.startswith(".")]  # no temporary files
    for path in directory.glob("*.json"):
        json.loads(path.read_text())  # every file whole
    assert run("sample", "saved_models/run", "--length", 20, "--seed", 1).exit_code == 0
    assert "run 2:" in run("info", "saved_models/run").output  # the resumed run is the second


def test_resume_bad_inputs(in_tmp, tiny_model):
    corpus = in_tmp / "notes.txt"
    corpus.write_text(make_text())
    assert_clean_failure(run("train", corpus, "--resume"), "--resume needs --name")
    assert_clean_failure(run("train", corpus, "--resume", "--name", "nothing"), "no model directory")
    shutil.copytree(tiny_model[0], in_tmp / "saved_models" / "tiny")
    other = in_tmp / "other.txt"
    other.write_text(make_text(lines=50, seed=9))
    assert_clean_failure(run("train", other, "--resume", "--name", "tiny", "--time-budget", "1s"), "not the text")
    refused = run("train", corpus, "--resume", "--name", "tiny", "--units", 512, "--seed", 0)
    assert_clean_failure(
        refused,
        "only --epochs, --time-budget, --checkpoint-every, --strategy, --devices may be given, not --seed, --units",
    )
    (in_tmp / "saved_models" / "tiny" / "backup.json").unlink()
    assert_clean_failure(run("train", corpus, "--resume", "--name", "tiny"), "no training backup")


def test_settings_that_would_be_ignored_are_refused(in_tmp, tiny_model):
    corpus = in_tmp / "notes.txt"
    corpus.write_text(make_text())
    with_network = run("train", corpus, "--from", tiny_model[0], "--units", 64, "--level", "word")
    assert_clean_failure(with_network, "--from takes the network and vocabulary from")
    assert "leave out --level, --units" in with_network.output
    assert_clean_failure(run("train", corpus, "--drop-unknown"), "--drop-unknown only applies with --from MODEL")
    assert not (in_tmp / "saved_models").exists()


def test_fine_tune_from_a_model(in_tmp, tiny_model):
    base, corpus = tiny_model
    new_text = in_tmp / "more.txt"
    new_text.write_text(make_text(lines=200, seed=3) + "Ωmega\n")
    refused = run("train", new_text, "--from", base)
    assert_clean_failure(refused, "characters of the corpus are not in the model's vocabulary: 'Ω'")
    assert "--drop-unknown" in refused.output and not (in_tmp / "saved_models").exists()
    result = run(
        "train",
        new_text,
        "--from",
        base,
        "--drop-unknown",
        "--epochs",
        1,
        "--seq-length",
        32,
        "--batch-size",
        8,
        "--precision",
        "float32",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(run("info", "saved_models/more", "--format", "json").output)
    assert report["from"] == str(base) and report["model"]["units"] == 24  # the base's network
    assert (
        report["tokenizer"]["vocabulary_size"]
        == json.loads(run("info", base, "--format", "json").output)["tokenizer"]["vocabulary_size"]
    )
    # It starts where the base model is: its first epoch beats the base's own first epoch (from scratch).
    base_metrics = json.loads((base / "metrics.json").read_text())
    assert report["metrics"][0]["val_loss"] < base_metrics[0]["val_loss"]


def test_info_describes_a_run_with_only_a_backup_and_sample_says_how_to_resume(tiny_model, tmp_path):
    directory = tmp_path / "saved_models" / "unfinished"
    shutil.copytree(tiny_model[0], directory)
    (directory / "model.keras").unlink()  # killed before its first epoch ended: a backup, no model
    result = run("info", directory)
    assert result.exit_code == 0, result.output
    assert "unfinished: no model saved yet, a backup at step" in result.output
    assert f"cd {tmp_path} && textgen train {tiny_model[1]} --name unfinished --resume" in result.output
    report = json.loads(run("info", directory, "--format", "json").output)
    assert report["saved"] is False and report["global_step"] > 0 and report["resume"].endswith("--resume")
    for command in (["sample", directory], ["evaluate", directory, tiny_model[1]]):
        failed = run(*command)
        assert_clean_failure(failed, "is an unfinished run with no model saved yet (its backup is at step")


def test_a_training_run_shows_no_tensorflow_log_lines_unless_verbose(tmp_path):
    import subprocess

    corpus = tmp_path / "notes.txt"
    corpus.write_text(make_text(lines=100))
    noise = ("I0000", "E0000", "W0000", "absl::InitializeLog", "cuda", "cuInit", "rebuild TensorFlow")
    environment = {
        key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "TEXTGEN_VERBOSE")
    }
    quiet = subprocess.run(
        textgen_command("train", corpus, "--epochs 1", SMALL_NETWORK),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in (quiet.stdout + quiet.stderr).splitlines() if any(word in line for word in noise)]
    assert quiet.stdout.startswith("training a ")
    loud = subprocess.run(
        textgen_command("--verbose", "train", corpus, "--name loud --epochs 1", SMALL_NETWORK),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment,
    )
    assert loud.returncode == 0 and any(word in loud.stderr for word in noise)  # what the quiet run hid


def test_a_kernel_that_cannot_train_in_the_precision_asked_for_is_one_line(in_tmp, text):
    (in_tmp / "text.txt").write_text(text)
    result = run("train", "text.txt", "--kernel", "onednn", "--precision", "mixed_float16", "--units", "8")
    assert_clean_failure(result, "--kernel onednn trains in float32 or mixed_bfloat16, not mixed_float16")
    assert not (in_tmp / "saved_models" / "text").exists()


def test_sampled_text_is_written_in_few_writes_yet_as_it_comes(monkeypatch):
    import io
    import time

    from textgen import cli

    class CountingOutput(io.StringIO):
        writes = 0

        def write(self, text):
            CountingOutput.writes += 1
            return super().write(text)

    output = CountingOutput()
    monkeypatch.setattr(cli.sys, "stdout", output)
    cli._stream("The ", iter(["ab"] * 1000 + ["c\n", "d"]))  # fast pieces: gathered, whatever the buffering
    assert output.getvalue() == "The " + "ab" * 1000 + "c\nd\n"
    assert CountingOutput.writes <= 3  # was one write per piece: a system call each under PYTHONUNBUFFERED

    seen_while_writing = []

    def slow_pieces():
        for piece in "wxyz":
            time.sleep(0.03)
            seen_while_writing.append(output.getvalue())
            yield piece

    output.seek(0)
    output.truncate()
    cli._stream("", slow_pieces())
    assert output.getvalue() == "wxyz\n" and seen_while_writing[-1]  # text was out before the last piece
