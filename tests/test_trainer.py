"""Training through the library entry point: logs, budgets, signals, resume, NaN, schedules, patience."""

import json
import os
import signal
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_text, quiet, train_small
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import textgen
from textgen.generation.generator import load
from textgen.training.checkpoints import RunState, fit_segments
from textgen.training.plan import RunShape
from textgen.training.schedule import COOLDOWN_FRACTION, LearningRateDecay, schedule_factor


def corpus_file(tmp_path, lines, seed=0, name="text.txt"):
    path = tmp_path / name
    path.write_text(make_text(lines=lines, seed=seed))
    return path


def scalars(run_directory):
    """{tag: [(global step, value), ...]} of a TensorBoard run directory."""
    accumulator = EventAccumulator(str(run_directory), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, float(tf.make_ndarray(event.tensor_proto))) for event in accumulator.Tensors(tag)]
        for tag in accumulator.Tags()["tensors"]
    }


def test_tensorboard_logs_train_and_validation_scalars_at_the_global_step(tiny_model):
    logs = tiny_model[0] / "logs"
    train, validation = scalars(logs / "train"), scalars(logs / "validation")
    assert {"loss", "bits_per_character", "characters_per_second", "learning_rate"} <= set(train)
    assert {"loss", "bits_per_character", "perplexity"} <= set(validation)
    metrics = json.loads((tiny_model[0] / "metrics.json").read_text())
    # Validation: one point per epoch, at the global step the epoch ended on.
    assert [step for step, _ in validation["loss"]] == [record["global_step"] for record in metrics]


def test_a_curve_has_many_points_inside_one_epoch_and_a_resumed_run_continues_it(tmp_path, monkeypatch):
    from textgen.training import tensorboard_logs

    monkeypatch.setattr(tensorboard_logs, "SCALAR_SECONDS", 0.0)  # every SCALAR_STEPS steps, however fast
    corpus = corpus_file(tmp_path, 600)
    first = train_small(corpus, tmp_path, name="curve", batch_size=4, epochs=1, checkpoint_every=20)
    steps = [step for step, _ in scalars(first.directory / "logs" / "train")["loss"]]
    epoch_steps = first.epochs[-1]["steps"]
    assert len(steps) >= epoch_steps // tensorboard_logs.SCALAR_STEPS >= 5  # a curve, not one dot
    assert steps == sorted(steps) and steps[0] == tensorboard_logs.SCALAR_STEPS and steps[-1] == epoch_steps
    textgen.train(corpus, root=tmp_path, name="curve", resume=True, epochs=2, echo=quiet)
    steps = [step for step, _ in scalars(first.directory / "logs" / "train")["loss"]]
    assert steps == sorted(steps) and steps[-1] == 2 * epoch_steps  # on from where it stopped, not from 0
    assert len(set(steps)) == len(steps)


def test_off_a_terminal_a_progress_line_comes_every_few_seconds(tmp_path, monkeypatch):
    import re

    from textgen.training import progress

    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.05)
    lines = []
    train_small(corpus_file(tmp_path, 600), tmp_path, batch_size=4, epochs=2, echo=lines.append)
    found = [line for line in lines if line.startswith("step ")]
    assert found, lines
    pattern = r"step [\d,]+/[\d,]+ \(epoch [12]/2\): loss \d+\.\d{4}, [\d,]+ chars/s, (\d+h)?(\d+m)?\d+s left"
    assert all(re.fullmatch(pattern, line) for line in found), found
    assert progress.format_duration(3725) == "1h2m5s" and progress.format_duration(48) == "48s"


def test_metrics_json_has_every_epoch(tiny_model):
    metrics = json.loads((tiny_model[0] / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[1]["global_step"] == metrics[0]["global_step"] + metrics[1]["steps"]
    assert all(m["characters_per_second"] > 0 and m["val_loss"] > 0 for m in metrics)
    # "saved" says whether the epoch beat every earlier one, and the last saved epoch is the best.
    best = float("inf")
    for record in metrics:
        assert record["saved"] == (record["val_loss"] < best)
        best = min(best, record["val_loss"])
    saved = [record for record in metrics if record["saved"]]
    assert saved and saved[-1]["val_loss"] == min(record["val_loss"] for record in metrics)


def test_time_budget_stops_mid_epoch_and_keeps_the_model(tmp_path):
    corpus = corpus_file(tmp_path, 3000)
    result = train_small(corpus, tmp_path, batch_size=4, epochs=3, time_budget="1s")
    steps_per_epoch = (len(corpus.read_text()) * 9 // 10 - 20) // 20 // 4
    assert result.stopped_by_time_budget and result.directory == tmp_path / "text"
    assert len(result.epochs) == 1 and 0 < result.epochs[0]["steps"] < steps_per_epoch
    assert (result.directory / "model.keras").is_file() and result.epochs[0]["saved"]


def test_a_large_word_vocabulary_gets_a_hint(tmp_path):
    corpus = tmp_path / "many_words.txt"
    corpus.write_text(" ".join(f"w{index}" for index in range(10_500)) + "\n")
    lines = []
    train_small(corpus, tmp_path, echo=lines.append, level="word", seq_length=50, batch_size=16, units=4)
    assert any(line.startswith("note: 10,503 tokens") and "--max-vocab 10000" in line for line in lines), lines


def test_tensorboard_has_text_samples_for_every_epoch(tiny_model):
    accumulator = EventAccumulator(str(tiny_model[0] / "logs" / "samples"), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert {"samples/temperature_0.5", "samples/temperature_1"} <= set(accumulator.Tags()["tensors"])
    events = accumulator.Tensors("samples/temperature_1")
    metrics = json.loads((tiny_model[0] / "metrics.json").read_text())
    assert [event.step for event in events] == [record["global_step"] for record in metrics]  # at the global step
    text = events[-1].tensor_proto.string_val[0].decode("utf-8")
    assert text.startswith("```\n") and len(text) > 100


def test_text_samples_come_on_a_clock_inside_an_epoch_and_whitespace_is_named(tmp_path, monkeypatch):
    from textgen.training import tensorboard_logs

    monkeypatch.setattr(tensorboard_logs, "SAMPLE_SECONDS", 0.0)  # every step
    result = train_small(corpus_file(tmp_path, 100), tmp_path, batch_size=8, epochs=1)
    accumulator = EventAccumulator(str(result.directory / "logs" / "samples"), size_guidance={"tensors": 0})
    accumulator.Reload()
    steps = [event.step for event in accumulator.Tensors("samples/temperature_1")]
    assert len(steps) > 2 and steps[0] == 1 and steps == sorted(steps)
    assert tensorboard_logs._shown(" \n\n ") == "(only whitespace: 2 line breaks, 2 other)"


class Interrupt(keras.callbacks.Callback):
    """Sends SIGINT after the third batch, as if the user pressed Ctrl-C."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 2:
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_stops_cleanly_and_keeps_the_model(tmp_path):
    corpus = corpus_file(tmp_path, 2000)
    # The handler the run started with: Python's default, or SIG_IGN when the suite runs as a background job.
    before = signal.getsignal(signal.SIGINT)
    result = train_small(corpus, tmp_path, callbacks=[Interrupt()], batch_size=4, epochs=5)
    assert result.stopped_by_signal == "SIGINT"
    assert len(result.epochs) == 1 and result.epochs[0]["steps"] == 3
    assert (result.directory / "model.keras").is_file()
    assert signal.getsignal(signal.SIGINT) is before  # handler given back


def test_fit_segments_finish_the_partial_epoch_first():
    shape = RunShape(steps_per_epoch=10, epochs=3, characters_per_token=1.0, characters_per_batch=640.0)
    assert shape.total_steps == 30
    assert fit_segments(0, shape) == [(0, 3, 10, 0)]
    assert fit_segments(14, shape) == [(1, 2, 6, 14), (2, 3, 10, 20)]
    assert fit_segments(20, shape) == [(2, 3, 10, 20)]
    assert fit_segments(26, shape) == [(2, 3, 4, 26)]


@pytest.mark.parametrize("stateful", [False, True])
def test_resume_continues_from_the_backup_at_the_same_step(tmp_path, stateful):
    corpus = corpus_file(tmp_path, 400)
    first = train_small(
        corpus, tmp_path, name="run", batch_size=4, stateful=stateful, epochs=2, time_budget=0.5, checkpoint_every=5
    )
    directory = first.directory
    backup = json.loads((directory / "backup.json").read_text())
    stopped_at, first_progress = backup["global_step"], backup["schedule_progress"]
    assert first.stopped_by_time_budget and stopped_at == first.epochs[-1]["global_step"] > 0
    second = textgen.train(corpus, name="run", root=tmp_path, echo=quiet, resume=True, epochs=2)
    records = second.epochs
    steps_per_epoch = records[-1]["steps"]  # the last epoch is whole
    assert 0 < stopped_at < steps_per_epoch
    assert records[: len(first.epochs)] == first.epochs  # the history carries over
    resumed = records[len(first.epochs)]
    assert resumed["epoch"] == 1 and resumed["steps"] == steps_per_epoch - stopped_at  # same epoch, same step
    assert records[-1]["global_step"] == 2 * steps_per_epoch  # optimizer state restored: counts continue
    assert {record["run"] for record in first.epochs} == {1} and resumed["run"] == 2
    # The first run used up its schedule (its budget ran out): the resumed one gets a new one, not a rate of 0.
    assert first_progress == 1.0 and abs(resumed["learning_rate"] - 6e-3) < 1e-8
    backups = sorted(path.name for path in directory.glob("backup-*.weights.h5"))
    assert backups == [f"backup-{2 * steps_per_epoch}.weights.h5"]  # older backups are removed


class Poison(keras.callbacks.Callback):
    """Turns the output weights to NaN in the second epoch, as a diverging run would."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == 1 and batch == 2:
            kernel = self.model.layers[-1].kernel
            kernel.assign(np.full(kernel.shape, np.nan))


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_model(tmp_path):
    corpus, lines = corpus_file(tmp_path, 300), []
    result = train_small(corpus, tmp_path, echo=lines.append, callbacks=[Poison()], epochs=3)
    assert any("the loss became NaN in epoch 2; kept the last good model" in line for line in lines), lines
    generator = load(result.directory)  # the epoch-1 model, whole (its weights pass every check) and usable
    assert np.isfinite(generator.engine.output_kernel).all()
    assert len(generator.generate("The", length=20, seed=1)) == 23
    assert not (result.directory / "backup.json").exists()  # NaN weights are never backed up


class Frozen(keras.callbacks.Callback):
    """Puts the first weights back at every epoch end: the validation loss never improves."""

    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        self.model.set_weights(self.weights)


def test_patience_stops_after_epochs_without_improvement(tmp_path):
    corpus = corpus_file(tmp_path, 300)
    result = train_small(corpus, tmp_path, callbacks=[Frozen()], patience=2, epochs=20)
    # Epoch 1 sets the best loss; epochs 2 and 3 do not beat it; patience 2 stops there.
    assert [record["epoch"] for record in result.epochs] == [1, 2, 3]
    assert [record["saved"] for record in result.epochs] == [True, False, False]


def test_schedule_factors():
    assert [schedule_factor("linear", p) for p in (0.0, 0.25, 1.0, 1.5)] == [1.0, 0.75, 0.0, 0.0]
    assert schedule_factor("cosine", 0.0) == 1.0 and abs(schedule_factor("cosine", 0.5) - 0.5) < 1e-12
    assert abs(schedule_factor("cosine", 1.0)) < 1e-12
    assert schedule_factor("constant", 0.9) == 1.0
    assert schedule_factor("cooldown", 0.5) == 1.0 and abs(schedule_factor("cooldown", 0.9) - 0.5) < 1e-12


def test_the_default_schedule_holds_the_peak_then_cools_down_to_zero(tiny_model):
    metrics = json.loads((tiny_model[0] / "metrics.json").read_text())
    steps_per_epoch, peak = metrics[0]["steps"], 1e-2  # the fixture's learning rate
    total = 2 * steps_per_epoch
    # Keras logs the rate the last step of each epoch used: it was set before step global_step - 1.
    for record in metrics:
        expected = peak * min(1.0, (1 - (record["global_step"] - 1) / total) / COOLDOWN_FRACTION)
        assert abs(record["learning_rate"] - expected) < 1e-6, (record["learning_rate"], expected)
    assert abs(metrics[0]["learning_rate"] - peak) < 1e-6 and metrics[1]["learning_rate"] < peak / 5
    assert json.loads((tiny_model[0] / "backup.json").read_text())["schedule_progress"] == 1.0


def test_schedule_progress_follows_the_clock_and_never_goes_back():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1.0), loss="mse")
    decay = LearningRateDecay("linear", 1.0, total_steps=1000, time_budget=1e-9, state=RunState())
    decay.set_model(model)
    decay.on_train_begin()
    assert decay.progress() == 1.0  # the tiny budget is spent: the run is over, whatever the step count
    state = RunState(schedule_progress=0.6)
    resumed = LearningRateDecay("linear", 1.0, total_steps=1000, time_budget=None, state=state)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert resumed.progress() == 0.6  # step 0 of a resumed run does not restart the schedule
    resumed.on_train_batch_begin(0)
    assert abs(float(model.optimizer.learning_rate) - 0.4) < 1e-6 and state.schedule_progress == 0.6


def test_a_stateful_run_validates_and_saves_the_plain_model(tmp_path):
    corpus = corpus_file(tmp_path, 200, name="corpus.txt")
    result = train_small(corpus, tmp_path, name="stateful", epochs=2, stateful=True, layers=2)
    directory = result.directory
    assert [epoch["val_loss"] > 0 for epoch in result.epochs] == [True, True]
    assert json.loads((directory / "config.json").read_text())["train"]["stateful"]
    with zipfile.ZipFile(directory / "model.keras") as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    assert not any(layer["config"].get("stateful") for layer in layers)
    assert layers[0]["config"]["batch_shape"] == [None, None]
    model = keras.models.load_model(directory / "model.keras")  # our own file, written just now
    assert tuple(model(np.zeros((5, 3), np.int32)).shape)[:2] == (5, 3)  # trained at batch 8


def test_the_library_refuses_what_it_does_not_know(tmp_path):
    from textgen.errors import TextgenError

    corpus = corpus_file(tmp_path, 50)
    with pytest.raises(TextgenError, match="unknown setting 'colour'"):
        textgen.train(corpus, root=tmp_path, colour="red")
    with pytest.raises(TextgenError, match="units must be an integer >= 1"):
        textgen.train(corpus, root=tmp_path, units=0)
    with pytest.raises(TextgenError, match="name the corpus as train"):
        textgen.train(corpus, root=tmp_path, sources=("x",))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["text.txt"]  # nothing written
