import json
import os

import keras
import numpy as np
import pytest

from textgen.errors import TextgenError
from textgen.generation.numpy_engine import NumpyEngine
from textgen.saved.atomic import atomic_write, write_json
from textgen.saved.directory import (
    check_model_name,
    check_new_model_directory,
    default_model_name,
    newest_model_directory,
)
from textgen.saved.saved_model import describe, load_saved_model


class KeepTrainedModel(keras.callbacks.Callback):
    """Holds on to the trained model object, to compare it with what was saved."""

    def on_train_end(self, logs=None):
        self.trained = self.model


def test_the_saved_model_computes_what_the_trained_model_computed(tmp_path):
    from conftest import make_text, train_small

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(lines=200))
    keeper = KeepTrainedModel()
    result = train_small(corpus, tmp_path, callbacks=[keeper])
    saved = load_saved_model(result.directory)
    tokens = saved.tokenizer.encode("The river keeps")[np.newaxis]  # (1, time)
    expected = np.asarray(keeper.trained(tokens))  # the model in memory, before it was ever read back
    reloaded = keras.models.load_model(saved.model_path)  # our own file, written by the test
    np.testing.assert_allclose(np.asarray(reloaded(tokens)), expected, rtol=1e-6, atol=1e-6)
    engine = NumpyEngine(saved.read_weights()[0])
    logits, _ = engine.run(tokens, engine.initial_state(1))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_model_directory_has_every_file(tiny_model):
    directory, _ = tiny_model
    for name in ("config.json", "tokenizer.json", "model.keras", "metrics.json"):
        assert (directory / name).is_file()
    assert any((directory / "logs").rglob("events.out.tfevents.*"))
    config = json.loads((directory / "config.json").read_text())
    assert config["format_version"] == 1 and config["model"]["cell"] == "lstm"
    assert set(config["versions"]) >= {"textgen", "keras", "tensorflow"}
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temp files left


def test_describe_reports_parameters_and_global_step(tiny_model):
    directory, _ = tiny_model
    report = describe(load_saved_model(directory))
    model = keras.models.load_model(directory / "model.keras")
    assert report["parameters"] == model.count_params()
    assert report["global_step"] == int(model.optimizer.iterations) > 0
    assert [m["epoch"] for m in report["metrics"]] == [1, 2]


def copy_model(source, target):
    target.mkdir()
    for name in ("config.json", "tokenizer.json", "model.keras"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_corrupt_or_incomplete_directories_are_refused(tiny_model, tmp_path):
    directory, _ = tiny_model
    with pytest.raises(TextgenError, match="no model directory"):
        load_saved_model(tmp_path / "nothing")
    missing = copy_model(directory, tmp_path / "missing")
    (missing / "tokenizer.json").unlink()
    with pytest.raises(TextgenError, match="tokenizer.json is missing"):
        load_saved_model(missing)
    version = copy_model(directory, tmp_path / "version")
    (version / "config.json").write_text(json.dumps({"format_version": 7}))
    with pytest.raises(TextgenError, match="format_version 7"):
        load_saved_model(version)
    garbage = copy_model(directory, tmp_path / "garbage")
    (garbage / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(TextgenError, match="not a readable Keras model archive"):
        load_saved_model(garbage).read_weights()


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})

    def failing(temporary):
        with open(temporary, "w") as handle:
            handle.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, failing)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]
    previous = os.umask(0o027)  # the user's umask decides a new file's permissions, as for any file
    try:
        write_json(tmp_path / "shared.json", {})
    finally:
        os.umask(previous)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o640


def test_existing_name_needs_overwrite_and_names_are_plain(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.keras").write_text("a model")
    with pytest.raises(TextgenError, match="already exists; pass --overwrite"):
        check_new_model_directory(tmp_path / "taken", overwrite=False)
    assert check_new_model_directory(tmp_path / "taken", overwrite=True) == tmp_path / "taken"
    (tmp_path / "resumable").mkdir()
    (tmp_path / "resumable" / "backup.json").write_text("{}")
    with pytest.raises(TextgenError, match="unfinished run with a backup; continue it with --resume"):
        check_new_model_directory(tmp_path / "resumable", overwrite=False)
    (tmp_path / "abandoned").mkdir()  # killed before it saved anything: nothing to lose
    (tmp_path / "abandoned" / "config.json").write_text("{}")
    assert check_new_model_directory(tmp_path / "abandoned", overwrite=False) == tmp_path / "abandoned"
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(TextgenError, match="exists and is not a directory"):
        check_new_model_directory(tmp_path / "file", overwrite=True)
    for bad in ("../escape", "a/b", ".hidden", "", "name\n", "x" * 101):
        with pytest.raises(TextgenError, match="invalid model name"):
            check_model_name(bad)
    assert default_model_name("my notes (draft)") == "my_notes_draft"


def test_newest_model_directory(tmp_path):
    with pytest.raises(TextgenError, match="no saved model"):
        newest_model_directory(tmp_path)
    for index, name in enumerate(["old", "new", ".new.staging"]):  # a run's staging area is never picked
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.keras").write_text("x")
        os.utime(tmp_path / name / "model.keras", (1000 + index, 1000 + index))
    assert newest_model_directory(tmp_path).name == "new"


def save_keras_model(model, directory, source):
    """A copy of the model directory ``source`` whose model.keras is ``model``."""
    import shutil

    shutil.copytree(source, directory)
    model.save(directory / "model.keras")
    return directory


def test_an_archive_with_a_layer_textgen_does_not_build_is_refused(tiny_model, tmp_path):
    inputs = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(20, 4)(inputs)
    hidden = keras.layers.LayerNormalization()(hidden)  # a real Keras layer, but not one of ours
    outputs = keras.layers.Dense(20)(keras.layers.LSTM(4, return_sequences=True)(hidden))
    directory = save_keras_model(keras.Model(inputs, outputs), tmp_path / "strange", tiny_model[0])
    with pytest.raises(TextgenError, match="contains layers textgen does not build: LayerNormalization"):
        load_saved_model(directory).read_weights()


def test_weights_that_do_not_fit_the_vocabulary_are_refused(tiny_model, tmp_path):
    from textgen.config import ModelConfig
    from textgen.model import build_model

    vocabulary_size = load_saved_model(tiny_model[0]).tokenizer.vocabulary_size
    model = build_model(ModelConfig(units=4, embedding_dim=4), vocabulary_size + 3)
    directory = save_keras_model(model, tmp_path / "other", tiny_model[0])
    with pytest.raises(
        TextgenError, match=rf"does not fit its config.json and tokenizer.json: .*\({vocabulary_size + 3}, 4\)"
    ):
        load_saved_model(directory).read_weights()


def network_layers(units=3, vocabulary=5, embedding_dim=2):
    """KerasLayers of a well-formed 1-layer GRU network, to break one thing at a time."""
    from textgen.saved.keras_archive import KerasLayer

    zeros = np.zeros
    return [
        KerasLayer("InputLayer", []),
        KerasLayer("Embedding", [zeros((vocabulary, embedding_dim))]),
        KerasLayer("GRU", [zeros((embedding_dim, 3 * units)), zeros((units, 3 * units)), zeros((2, 3 * units))]),
        KerasLayer("Dense", [zeros((units, vocabulary)), zeros(vocabulary)]),
    ]


def test_the_network_checks_every_shape():
    from textgen.saved.keras_archive import Network

    assert Network.from_layers(network_layers()).vocabulary_size == 5
    broken = {
        "the embedding and the output layer disagree": lambda layers: layers[3].weights.__setitem__(1, np.zeros(6)),
        r"recurrent layer 1 \(GRU\) has wrong shapes": lambda layers: layers[2].weights.__setitem__(
            2, np.zeros(9)
        ),  # a reset_after=False bias
        "does not fit the last recurrent layer": lambda layers: layers[3].weights.__setitem__(0, np.zeros((4, 5))),
        "NaN or infinite": lambda layers: layers[1].weights[0].__setitem__((0, 0), np.nan),
        "not numbers": lambda layers: layers[1].weights.__setitem__(0, np.array([["a", "b"]] * 5)),
        "does not have one embedding": lambda layers: layers.pop(1),
        "does not have 3 arrays": lambda layers: layers[2].weights.pop(),
    }
    for message, damage in broken.items():
        layers = network_layers()
        damage(layers)
        with pytest.raises(TextgenError, match=message):
            Network.from_layers(layers)


def test_a_corrupt_tokenizer_or_config_is_one_clear_error(tiny_model, tmp_path):
    import shutil

    cases = {
        "tokenizer.json": ({"format_version": 1, "kind": "char", "vocabulary": "abc"}, "no valid vocabulary"),
        "config.json": (
            {"format_version": 1, "model": {"units": "many"}, "tokenizer": {}, "train": {}},
            "units must be an integer",
        ),
    }
    for name, (content, message) in cases.items():
        directory = tmp_path / name
        shutil.copytree(tiny_model[0], directory)
        (directory / name).write_text(json.dumps(content))
        with pytest.raises(TextgenError, match=message):
            load_saved_model(directory)
    (directory / "config.json").write_text(json.dumps({"format_version": 1, "model": [], "tokenizer": {}, "train": {}}))
    with pytest.raises(TextgenError, match='config.json\'s "model" must be a JSON object'):
        load_saved_model(directory)
