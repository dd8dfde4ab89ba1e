"""Model directories made by an attacker or a broken disk: each refused in one line, before any array is used.

Every case starts from a good tiny model and damages one thing in its
model.keras (the HDF5 weights inside it, or the zip around it), then asks
``info``, ``sample`` and ``evaluate`` for it: each must exit 1 with one line
naming the problem, and never read a byte outside the model directory.
"""

import io
import shutil
import zipfile

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from textgen.cli import main
from textgen.errors import TextgenError
from textgen.saved.saved_model import load_saved_model

DENSE_BIAS = "layers/dense/vars/1"  # the output layer's bias: (vocabulary,)


def copy_model(source, target):
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("logs", "backup*"))
    return target


def rewrite_archive(directory, *, weights=None, members=None, compression=zipfile.ZIP_STORED):
    """Rewrite directory/model.keras: ``weights(h5py.File)`` edits its weights; ``members`` replaces members.

    Members are stored uncompressed, as Keras writes them, unless ``compression`` says otherwise.
    """
    path = directory / "model.keras"
    with zipfile.ZipFile(path) as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    if weights is not None:
        buffer = io.BytesIO(contents["model.weights.h5"])
        with h5py.File(buffer, "r+") as file:
            weights(file)
        contents["model.weights.h5"] = buffer.getvalue()
    contents.update(members or {})
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


def vocabulary_size(directory):
    return load_saved_model(directory).tokenizer.vocabulary_size


def replace_dataset(name, **create):
    def edit(file):
        del file[name]
        file.create_dataset(name, **create)

    return edit


def link_to(name, link):
    def edit(file):
        del file[name]
        file[name] = link

    return edit


def hostile_cases(tmp_path, size):
    """{case: (edit of the weights file, the message expected)}; ``size`` is the vocabulary size."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 64)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file["data"] = np.ones(size, np.float32)
    layout = h5py.VirtualLayout(shape=(size,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(size,))

    def cycle(file):
        file["layers/dense/vars/loop"] = file["layers/dense"]  # a hard link to its own ancestor

    def named_type(file):
        file["layers/dense/vars/type"] = np.dtype("f4")

    def virtual(file):
        del file[DENSE_BIAS]
        file.create_virtual_dataset(DENSE_BIAS, layout)

    def missing(file):
        del file[DENSE_BIAS]

    return {
        "external storage": (
            replace_dataset(DENSE_BIAS, shape=(size,), dtype="f4", external=[(str(secret), 0, 4 * size)]),
            "keeps its data in another file",
        ),
        "external link": (link_to(DENSE_BIAS, h5py.ExternalLink(str(other), "/data")), "is a link"),
        "soft link": (link_to(DENSE_BIAS, h5py.SoftLink("/layers/dense/vars/0")), "is a link"),
        "virtual dataset": (virtual, "is virtual"),
        "gzip": (replace_dataset(DENSE_BIAS, data=np.zeros(size, np.float32), compression="gzip"), "compressed"),
        "huge declared shape": (replace_dataset(DENSE_BIAS, shape=(10**9,), dtype="f4"), "declares"),
        "strings": (replace_dataset(DENSE_BIAS, data=np.array([b"ab"] * size)), "plain numbers"),
        "wrong shape": (replace_dataset(DENSE_BIAS, data=np.zeros(5, np.float32)), "does not fit its config.json"),
        "integer weights": (replace_dataset(DENSE_BIAS, data=np.zeros(size, np.int32)), "expected float"),
        "missing array": (missing, "has 1 arrays, not 2"),
        "cycle": (cycle, "deeper than|more than 10,000 objects|declare more than"),
        "named datatype": (named_type, "not a group or a dataset"),
    }


def test_a_deflate_bomb_is_refused_unread(tiny_model, tmp_path):
    # 1 GB of zeros deflates to ~1 MB; the weights member may not be compressed at all (Keras stores it).
    directory = copy_model(tiny_model[0], tmp_path / "bomb")
    rewrite_archive(directory, members={"model.weights.h5": bytes(1 << 30)}, compression=zipfile.ZIP_DEFLATED)
    assert (directory / "model.keras").stat().st_size < 8 << 20
    with pytest.raises(TextgenError, match="compressed, and Keras stores it as it is"):
        load_saved_model(directory).read_weights()


def test_hostile_weights_are_refused_before_any_array_is_read(tiny_model, tmp_path):
    size = vocabulary_size(tiny_model[0])
    for case, (edit, message) in hostile_cases(tmp_path, size).items():
        directory = copy_model(tiny_model[0], tmp_path / case.replace(" ", "_"))
        rewrite_archive(directory, weights=edit)
        with pytest.raises(TextgenError, match=message):
            load_saved_model(directory).read_weights()


@pytest.mark.parametrize("command", ["info", "sample", "evaluate"])
def test_every_command_refuses_external_storage_in_one_line(tiny_model, tmp_path, command):
    directory = copy_model(tiny_model[0], tmp_path / "model")
    edit, _ = hostile_cases(tmp_path, vocabulary_size(directory))["external storage"]
    rewrite_archive(directory, weights=edit)
    arguments = {"info": [directory], "sample": [directory], "evaluate": [directory, tiny_model[1]]}[command]
    result = CliRunner().invoke(main, [command, *map(str, arguments)])
    assert result.exit_code == 1, result.output
    assert "keeps its data in another file" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_oversized_zip_members_are_refused_unread(tiny_model, tmp_path):
    zeros = b"\0" * (64 << 20)  # compresses to ~64 KB: a zip bomb for anyone who reads it whole
    cases = {
        ("model.weights.h5", zipfile.ZIP_STORED): (zeros, "bytes, more than a model of its config.json holds"),
        ("model.weights.h5", zipfile.ZIP_DEFLATED): (zeros, "its model.weights.h5 is compressed"),
        ("config.json", zipfile.ZIP_DEFLATED): (b" " * (2 << 20), "its config.json is .*more than"),
    }
    for (member, compression), (data, message) in cases.items():
        directory = copy_model(tiny_model[0], tmp_path / f"{member}-{compression}")
        rewrite_archive(directory, members={member: data}, compression=compression)
        with pytest.raises(TextgenError, match=message):
            load_saved_model(directory).read_weights()


def test_an_archive_whose_layers_disagree_with_config_json_is_refused(tiny_model, tmp_path):
    import json

    directory = copy_model(tiny_model[0], tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    config["model"]["layers"] = 3
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(TextgenError, match="holds layers Embedding, LSTM, LSTM, Dense; its config.json describes"):
        load_saved_model(directory).read_weights()


def json_cases():
    """{file: [contents]}: valid JSON of the wrong shape or types, for each JSON file of a model."""
    return {
        "config.json": [[], {}, {"format_version": 1, "model": [], "tokenizer": {}, "train": {}}, "1", None],
        "tokenizer.json": [[], {"format_version": 1}, {"format_version": 1, "kind": "char", "vocabulary": 5}],
        "metrics.json": [{}, [1, 2], [{"epoch": "one"}], [{"loss": "low"}], [{"epoch": -1}], [{"epoch": True}]],
    }


def test_malformed_json_files_are_one_line_for_info_and_sample(tiny_model, tmp_path):
    import json

    for name, contents in json_cases().items():
        for index, content in enumerate(contents):
            directory = copy_model(tiny_model[0], tmp_path / f"{name}-{index}")
            (directory / name).write_text(json.dumps(content))
            for command in ("info", "sample"):
                result = CliRunner().invoke(main, [command, str(directory)])
                assert result.exit_code == 1, (name, content, command, result.output)
                assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output


def test_malformed_backups_are_refused_before_resuming(tiny_model, tmp_path, monkeypatch):
    import json

    from textgen.saved.backup import read_backup

    good = json.loads((tiny_model[0] / "backup.json").read_text())
    cases = {
        "not an object": [],
        "step as a string": {**good, "global_step": "12"},
        "negative step": {**good, "global_step": -4},
        "no weights": {key: value for key, value in good.items() if key != "weights"},
        "weights outside": {**good, "weights": "../backup-1.weights.h5"},
        "loss as text": {**good, "best_loss": "low"},
        "progress past the end": {**good, "schedule_progress": 7},
        "history of strings": {**good, "history": ["epoch"]},
        "empty": {},
    }
    monkeypatch.chdir(tmp_path)
    for case, content in cases.items():
        directory = tmp_path / "saved_models" / case.replace(" ", "_")
        shutil.copytree(tiny_model[0], directory)
        (directory / "backup.json").write_text(json.dumps(content))
        with pytest.raises(TextgenError):
            read_backup(directory)
        result = CliRunner().invoke(main, ["train", str(tiny_model[1]), "--name", directory.name, "--resume"])
        assert result.exit_code == 1 and result.output.count("\n") == 1, (case, result.output)


def test_a_hostile_backup_is_refused_before_keras_reads_it(tiny_model, tmp_path, monkeypatch):
    import json

    directory = tmp_path / "saved_models" / "model"
    shutil.copytree(tiny_model[0], directory)
    backup = json.loads((directory / "backup.json").read_text())
    size = vocabulary_size(directory)
    (tmp_path / "secret.txt").write_bytes(b"x" * 4 * size)
    with h5py.File(directory / backup["weights"], "r+") as file:  # a backup has the archive's layout
        del file[DENSE_BIAS]
        file.create_dataset(
            DENSE_BIAS, shape=(size,), dtype="f4", external=[(str(tmp_path / "secret.txt"), 0, 4 * size)]
        )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", str(tiny_model[1]), "--name", "model", "--resume"])
    assert result.exit_code == 1 and "keeps its data in another file" in result.output, result.output


def test_links_fifos_and_huge_files_in_a_model_directory_are_refused_without_reading(tiny_model, tmp_path):
    import os

    cases = {
        "model.keras": [
            ("link", lambda path: path.symlink_to("/etc/passwd"), "is a symbolic link"),
            ("fifo", lambda path: os.mkfifo(path), "not a regular file"),  # opening it must not wait
            ("huge", lambda path: os.truncate(path, 1 << 40), "is refused: 1,099,511,627,776 bytes"),
        ],
        "config.json": [
            ("link", lambda path: path.symlink_to("/etc/hostname"), "is a symbolic link"),
            ("huge", lambda path: os.truncate(path, 1 << 30), "is refused"),
            ("nested", lambda path: path.write_text("[" * 100_000 + "]" * 100_000), "not valid JSON"),
        ],
        "metrics.json": [("fifo", lambda path: os.mkfifo(path), "not a regular file")],
    }
    for name, damages in cases.items():
        for case, damage, message in damages:
            directory = copy_model(tiny_model[0], tmp_path / f"{name}-{case}")
            (directory / name).unlink(missing_ok=True)
            if case == "huge":
                (directory / name).touch()
            damage(directory / name)
            with pytest.raises(TextgenError, match=message):
                load_saved_model(directory).read_weights()
