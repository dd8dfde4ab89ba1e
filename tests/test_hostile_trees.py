"""Random hostile model directories, run through every command that reads one.

Hypothesis builds a copy of a trained model whose files are, each at random,
kept, cut short, filled with junk, replaced by a symbolic link or a hard link
to a secret outside, by a FIFO, or by a sparse 2 GB file; the corpus directory
next to it gets links out too. Then ``info``, ``sample``, ``evaluate``,
``train --resume`` and ``train --from`` run on it, each in a process of its
own that audits every file it opens (``sys.addaudithook``) and, for the
commands that never load TensorFlow, under a memory cap (``RLIMIT_AS``).
Every run must exit 0 or print one line, and none may open anything in the
``outside`` directory the links point to.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textgen.saved.layout import backup_weights_name

pytestmark = pytest.mark.slow

# Runs textgen's CLI with every file it tries to open recorded (audit event "open": builtins.open, io.open,
# os.open), as the file that would be opened: with O_NOFOLLOW a link itself is refused, not its target.
DRIVER = """
import json, os, resource, sys
opened = []
def target(path, flags):
    path = os.fsdecode(path)
    if isinstance(flags, int) and flags & os.O_NOFOLLOW:
        return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    return os.path.realpath(path)
def audit(event, arguments):
    if event == "open" and isinstance(arguments[0], (str, bytes, os.PathLike)):
        opened.append(target(arguments[0], arguments[2] if len(arguments) > 2 else None))
sys.addaudithook(audit)
report, cap, *arguments = sys.argv[1:]
if int(cap):
    resource.setrlimit(resource.RLIMIT_AS, (int(cap), int(cap)))
def write_report():
    with open(report, "w") as handle:
        json.dump(opened, handle)
import atexit
atexit.register(write_report)
sys.argv = ["textgen", *arguments]
from textgen.cli import main
main()
"""
MEMORY_CAP = 3 << 30  # the commands without TensorFlow: a hostile file must not make them read gigabytes
FILES = ["config.json", "tokenizer.json", "model.keras", "metrics.json", "backup.json", "logs"]
DAMAGES = ["keep", "truncate", "junk", "symlink out", "hard link out", "fifo", "sparse"]


def damage(path, how, secret, rng_bytes):
    if how == "keep":
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if how == "truncate":
        path.write_bytes(rng_bytes[: len(rng_bytes) // 2])
    elif how == "junk":
        path.write_bytes(rng_bytes)
    elif how == "symlink out":
        path.symlink_to(secret)
    elif how == "hard link out":
        os.link(secret, path)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "sparse":
        path.touch()
        os.truncate(path, 2 << 30)


def run(tmp_path, arguments, *, cap):
    report = tmp_path / f"opened-{len(list(tmp_path.glob('opened-*')))}.json"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run(
        [sys.executable, "-c", DRIVER, str(report), str(cap), *map(str, arguments)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    opened = json.loads(report.read_text()) if report.exists() else []
    return process, opened


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    damages=st.fixed_dictionaries({name: st.sampled_from(DAMAGES) for name in FILES}),
    junk=st.binary(min_size=0, max_size=2048),
    corpus_link_out=st.booleans(),
)
def test_any_hostile_tree_is_refused_in_one_line_and_nothing_outside_is_opened(
    tiny_model, tmp_path_factory, damages, junk, corpus_link_out
):
    tmp_path = tmp_path_factory.mktemp("tree")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("root:x:0:0:the secret:/root:/bin/bash\n" * 200)
    directory = tmp_path / "saved_models" / "model"
    shutil.copytree(tiny_model[0], directory)
    backup = json.loads((directory / "backup.json").read_text())
    for name, how in damages.items():
        damage(directory / name, how, secret, junk)
    if damages["backup.json"] == "keep":  # its weights file too, as the backup names it
        damage(directory / backup_weights_name(backup["global_step"]), damages["model.keras"], secret, junk)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(tiny_model[1], corpus / "text.txt")
    if corpus_link_out:
        (corpus / "linked.txt").symlink_to(secret)

    commands = [
        (["info", directory], MEMORY_CAP),
        (["sample", directory, "--length", "20", "--seed", "1"], MEMORY_CAP),
        (["evaluate", directory, corpus], MEMORY_CAP),
        (["train", corpus, "--name", "model", "--resume", "--epochs", "3"], 0),
        (["train", corpus, "--from", directory, "--name", "tuned", "--epochs", "1", "--batch-size", "8"], 0),
    ]
    for arguments, cap in commands:
        process, opened = run(tmp_path, arguments, cap=cap)
        said = process.stderr.strip().splitlines()
        assert "Traceback" not in process.stderr and "internal error" not in process.stderr, (arguments, damages)
        assert process.returncode == 0 or (process.returncode == 1 and said and said[-1].startswith("Error: ")), (
            arguments,
            damages,
            process.returncode,
            process.stderr[-2000:],
        )
        leaked = [path for path in opened if path.startswith(str(outside.resolve()))]
        assert not leaked, (arguments, damages, leaked)


def test_the_audit_sees_a_link_that_is_followed(tiny_model, tmp_path):
    # The check above could pass by recording nothing: a link named on the command line is followed
    # (the user chose it), and the audit must show its target being opened.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the secret\n" * 20)
    (tmp_path / "chosen.txt").symlink_to(outside / "secret.txt")
    process, opened = run(tmp_path, ["evaluate", tiny_model[0], tmp_path / "chosen.txt"], cap=MEMORY_CAP)
    assert str((outside / "secret.txt").resolve()) in opened, (process.stderr, opened[-5:])
