import json
import zipfile

import keras
import numpy as np
import pytest

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from textgen.saved import artifacts
from textgen.config import CorpusConfig, ModelConfig, TokenizerConfig, TrainConfig
from textgen.training.loop import train
from textgen.data.training_text import prepare_training_text

from conftest import make_text


def tags(run_directory):
    accumulator = EventAccumulator(str(run_directory), size_guidance={"tensors": 0})
    accumulator.Reload()
    return set(accumulator.Tags()["tensors"])


def test_tensorboard_logs_train_and_validation_scalars(tiny_model):
    logs = tiny_model[0] / "logs"
    assert {"epoch_loss", "epoch_bits_per_character", "epoch_perplexity", "epoch_characters_per_second",
            "epoch_learning_rate"} <= tags(logs / "train")
    assert {"epoch_loss", "epoch_bits_per_character", "epoch_perplexity"} <= tags(logs / "validation")


def test_metrics_json_has_every_epoch(tiny_model):
    metrics = json.loads((tiny_model[0] / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[1]["global_step"] == metrics[0]["global_step"] + metrics[1]["steps"]
    assert all(m["characters_per_second"] > 0 and m["val_loss"] > 0 for m in metrics)
    assert metrics[0]["saved"]  # the first epoch is always the best so far


def test_time_budget_stops_mid_epoch_and_keeps_the_model(tmp_path):
    corpus = tmp_path / "long.txt"
    corpus.write_text(make_text(lines=3000))
    corpus_config = CorpusConfig(sources=(str(corpus),))
    train_config = TrainConfig(seq_length=20, batch_size=4, epochs=3, time_budget=1.0, precision="float32")
    model_config = ModelConfig(units=8, embedding_dim=4, num_layers=1)
    text, train_config = prepare_training_text(corpus_config, TokenizerConfig(), train_config)
    directory = tmp_path / "model"
    with artifacts.new_model_directory(directory):
        result = train(text, directory=directory, model_config=model_config, tokenizer_config=TokenizerConfig(),
                       train_config=train_config, corpus_config=corpus_config, verbose=0, echo=lambda line: None)
    steps_per_epoch = (len(text.train_ids) - 20) // 20 // 4
    assert result.stopped_by_time_budget
    assert len(result.epochs) == 1 and 0 < result.epochs[0]["steps"] < steps_per_epoch
    assert (directory / "model.keras").is_file() and result.epochs[0]["saved"]


def test_a_large_word_vocabulary_gets_a_hint(tmp_path):
    corpus = tmp_path / "many_words.txt"
    corpus.write_text(" ".join(f"w{index}" for index in range(10_500)) + "\n")
    corpus_config, tokenizer_config = CorpusConfig(sources=(str(corpus),)), TokenizerConfig(level="word")
    train_config = TrainConfig(seq_length=50, batch_size=16, epochs=1, precision="float32")
    text, train_config = prepare_training_text(corpus_config, tokenizer_config, train_config)
    lines, directory = [], tmp_path / "model"
    with artifacts.new_model_directory(directory):
        train(text, directory=directory, model_config=ModelConfig(units=4, embedding_dim=4, num_layers=1),
              tokenizer_config=tokenizer_config, train_config=train_config, corpus_config=corpus_config,
              verbose=0, echo=lines.append)
    assert any(line.startswith("note: 10,503 tokens") and "--max-vocab 10000" in line for line in lines), lines


def test_tensorboard_has_text_samples_for_every_epoch(tiny_model):
    accumulator = EventAccumulator(str(tiny_model[0] / "logs" / "samples"), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert {"samples/temperature_0.5", "samples/temperature_1"} <= set(accumulator.Tags()["tensors"])
    events = accumulator.Tensors("samples/temperature_1")
    assert [event.step for event in events] == [0, 1]
    text = events[-1].tensor_proto.string_val[0].decode("utf-8")
    assert text.startswith("```\n") and len(text) > 100


def test_sigint_stops_cleanly_and_keeps_the_model(tmp_path):
    import os
    import signal

    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C

    from textgen.training import loop as trainer

    corpus = tmp_path / "long.txt"
    corpus.write_text(make_text(lines=2000))
    corpus_config = CorpusConfig(sources=(str(corpus),))
    train_config = TrainConfig(seq_length=20, batch_size=4, epochs=5, precision="float32")
    text, train_config = prepare_training_text(corpus_config, TokenizerConfig(), train_config)
    directory = tmp_path / "model"
    original_fit = keras.Model.fit

    def fit_with_interrupt(self, *arguments, callbacks=(), **options):
        return original_fit(self, *arguments, callbacks=[Interrupt(), *callbacks], **options)

    keras.Model.fit = fit_with_interrupt
    try:
        with artifacts.new_model_directory(directory):
            result = trainer.train(text, directory=directory, model_config=ModelConfig(units=8, embedding_dim=4),
                                   tokenizer_config=TokenizerConfig(), train_config=train_config,
                                   corpus_config=corpus_config, verbose=0, echo=lambda line: None)
    finally:
        keras.Model.fit = original_fit
    assert result.stopped_by_signal == "SIGINT"
    assert len(result.epochs) == 1 and result.epochs[0]["steps"] == 3
    assert (directory / "model.keras").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler given back


def test_fit_segments_finish_the_partial_epoch_first():
    from textgen.training.loop import fit_segments

    assert fit_segments(0, 10, 3) == [(0, 3, 10, 0)]
    assert fit_segments(14, 10, 3) == [(1, 2, 6, 14), (2, 3, 10, 20)]
    assert fit_segments(20, 10, 3) == [(2, 3, 10, 20)]
    assert fit_segments(26, 10, 3) == [(2, 3, 4, 26)]


@pytest.mark.parametrize("stateful", [False, True])
def test_resume_continues_from_the_backup_at_the_same_step(tmp_path, stateful):
    from textgen.training import loop as trainer

    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=400))
    corpus_config = CorpusConfig(sources=(str(corpus),))
    model_config = ModelConfig(units=8, embedding_dim=4, num_layers=1)
    first_config = TrainConfig(seq_length=20, batch_size=4, epochs=2, time_budget=0.5, checkpoint_every=5,
                               stateful=stateful, precision="float32")
    text, first_config = prepare_training_text(corpus_config, TokenizerConfig(), first_config)
    steps_per_epoch = (len(text.train_ids) - 20) // 20 // 4
    directory = tmp_path / "model"
    options = dict(directory=directory, model_config=model_config, tokenizer_config=TokenizerConfig(),
                   corpus_config=corpus_config, verbose=0, echo=lambda line: None)
    with artifacts.new_model_directory(directory):
        first = trainer.train(text, train_config=first_config, **options)
    backup = json.loads((directory / "backup.json").read_text())
    stopped_at, first_progress = backup["global_step"], backup["schedule_progress"]
    assert first.stopped_by_time_budget and 0 < stopped_at < steps_per_epoch
    assert stopped_at == first.epochs[-1]["global_step"]
    second = trainer.train(text, train_config=TrainConfig(seq_length=20, batch_size=4, epochs=2, stateful=stateful,
                                                          precision="float32"), resume=True, **options)
    records = second.epochs
    assert records[: len(first.epochs)] == first.epochs  # the history carries over
    resumed = records[len(first.epochs)]
    assert resumed["epoch"] == 1 and resumed["steps"] == steps_per_epoch - stopped_at  # same epoch, same step
    assert records[-1]["global_step"] == 2 * steps_per_epoch  # optimizer state restored: counts continue
    assert {record["run"] for record in first.epochs} == {1} and resumed["run"] == 2
    # The first run used up its schedule (its budget ran out): the resumed one gets a new one, not a rate of 0.
    assert first_progress == 1.0 and abs(resumed["learning_rate"] - first_config.learning_rate) < 1e-8
    backups = sorted(path.name for path in directory.glob("backup-*.weights.h5"))
    assert backups == [f"backup-{2 * steps_per_epoch}.weights.h5"]  # older backups are removed


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_model(tmp_path):
    import keras
    import numpy as np

    from textgen.training import loop as trainer

    class Poison(keras.callbacks.Callback):
        """Turns the weights to NaN in the second epoch, as a diverging run would."""

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 1 and batch == 2:
                self.model.layers[-1].kernel.assign(np.full(self.model.layers[-1].kernel.shape, np.nan))

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=300))
    corpus_config = CorpusConfig(sources=(str(corpus),))
    train_config = TrainConfig(seq_length=20, batch_size=8, epochs=3, precision="float32")
    text, train_config = prepare_training_text(corpus_config, TokenizerConfig(), train_config)
    directory, lines = tmp_path / "model", []
    original_fit = keras.Model.fit

    def fit_with_poison(self, *arguments, callbacks=(), **options):
        return original_fit(self, *arguments, callbacks=[Poison(), *callbacks], **options)

    keras.Model.fit = fit_with_poison
    try:
        with artifacts.new_model_directory(directory):
            trainer.train(text, directory=directory, model_config=ModelConfig(units=8, embedding_dim=4),
                          tokenizer_config=TokenizerConfig(), train_config=train_config,
                          corpus_config=corpus_config, verbose=0, echo=lines.append)
    finally:
        keras.Model.fit = original_fit
    assert any("the loss became NaN in epoch 2; kept the last good model" in line for line in lines), lines
    from textgen.generation.generator import load

    assert load(directory).generate("The", length=20, seed=1)  # the epoch-1 model, whole and usable
    assert not (directory / "backup.json").exists()  # NaN weights are never backed up


def test_schedule_factors():
    from textgen.training.callbacks import schedule_factor

    assert [schedule_factor("linear", p) for p in (0.0, 0.25, 1.0, 1.5)] == [1.0, 0.75, 0.0, 0.0]
    assert schedule_factor("cosine", 0.0) == 1.0 and abs(schedule_factor("cosine", 0.5) - 0.5) < 1e-12
    assert abs(schedule_factor("cosine", 1.0)) < 1e-12
    assert schedule_factor("constant", 0.9) == 1.0


def test_the_default_schedule_holds_the_peak_then_cools_down_to_zero(tiny_model):
    from textgen.training.callbacks import COOLDOWN_FRACTION

    metrics = json.loads((tiny_model[0] / "metrics.json").read_text())
    steps_per_epoch, peak = metrics[0]["steps"], 1e-2  # the fixture's --learning-rate
    total = 2 * steps_per_epoch
    # Keras logs the rate the last step of each epoch used: it was set before step global_step - 1.
    for record in metrics:
        expected = peak * min(1.0, (1 - (record["global_step"] - 1) / total) / COOLDOWN_FRACTION)
        assert abs(record["learning_rate"] - expected) < 1e-6, (record["learning_rate"], expected)
    assert abs(metrics[0]["learning_rate"] - peak) < 1e-6 and metrics[1]["learning_rate"] < peak / 5
    assert json.loads((tiny_model[0] / "backup.json").read_text())["schedule_progress"] == 1.0


def test_schedule_progress_follows_the_clock_and_never_goes_back():
    import keras

    from textgen.training.callbacks import LearningRateDecay

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1.0), loss="mse")
    decay = LearningRateDecay("linear", 1.0, total_steps=1000, time_budget=1e-9, progress=0.0)
    decay.set_model(model)
    decay.on_train_begin()
    assert decay.progress() == 1.0  # the tiny budget is spent: the run is over, whatever the step count
    resumed = LearningRateDecay("linear", 1.0, total_steps=1000, time_budget=None, progress=0.6)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert resumed.progress() == 0.6  # step 0 of a resumed run does not restart the schedule
    resumed.on_train_batch_begin(0)
    assert abs(float(model.optimizer.learning_rate) - 0.4) < 1e-6


def test_a_stateful_run_validates_and_saves_the_plain_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(lines=200), encoding="utf-8")
    corpus_config, tokenizer_config = CorpusConfig(sources=(str(corpus),)), TokenizerConfig()
    train_config = TrainConfig(seq_length=20, batch_size=8, epochs=2, stateful=True, precision="float32")
    text, train_config = prepare_training_text(corpus_config, tokenizer_config, train_config)
    directory = tmp_path / "stateful"
    with artifacts.new_model_directory(directory):
        result = train(text, directory=directory, model_config=ModelConfig(units=8, embedding_dim=4),
                       tokenizer_config=tokenizer_config, train_config=train_config, corpus_config=corpus_config,
                       verbose=0, echo=lambda line: None)
    assert [epoch["val_loss"] > 0 for epoch in result.epochs] == [True, True]
    assert json.loads((directory / "config.json").read_text())["train"]["stateful"]
    with zipfile.ZipFile(directory / "model.keras") as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    assert not any(layer["config"].get("stateful") for layer in layers)
    assert layers[0]["config"]["batch_shape"] == [None, None]
    model = keras.models.load_model(directory / "model.keras")  # our own file, written just now
    assert tuple(model(np.zeros((5, 3), np.int32)).shape)[:2] == (5, 3)  # trained at batch 8
