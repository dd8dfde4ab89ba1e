import dataclasses

import pytest

from textgen.config import (
    TRAINING_SETTINGS,
    CorpusConfig,
    ModelConfig,
    SamplingConfig,
    TokenizerConfig,
    TrainConfig,
    parse_duration,
    training_configs,
)
from textgen.errors import TextgenError


@pytest.mark.parametrize("cls", [ModelConfig, TokenizerConfig, TrainConfig, SamplingConfig])
def test_defaults_round_trip_through_json(cls):
    value = cls()
    assert cls.from_dict(value.to_dict()) == value


def test_corpus_config_round_trip_keeps_sources_a_tuple():
    value = CorpusConfig(sources=("a.txt", "b.txt"))
    again = CorpusConfig.from_dict({**value.to_dict(), "sources": ["a.txt", "b.txt"]})
    assert again == value


def test_unknown_keys_fail():
    with pytest.raises(TextgenError, match="unknown ModelConfig keys: colour"):
        ModelConfig.from_dict({"cell": "gru", "colour": "red"})


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ModelConfig(cell="transformer"), "cell must be one of simple_rnn, lstm, gru"),
        (lambda: ModelConfig(layers=0), "layers must be an integer >= 1"),
        (lambda: ModelConfig(layers=True), "layers must be an integer >= 1"),
        (lambda: ModelConfig(units=-3), "units must be an integer >= 1"),
        (lambda: ModelConfig(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (lambda: ModelConfig(dropout=float("nan")), r"dropout must be in \[0, 1\)"),
        (lambda: ModelConfig(dropout="0.1"), r"dropout must be in \[0, 1\)"),
        (lambda: TokenizerConfig(lowercase=1), "lowercase must be true or false"),
        (lambda: TrainConfig(time_budget="soon"), "time budget must look like 90s"),
        (lambda: TrainConfig(time_budget=-5), r"time-budget must be in \(0, inf\)"),
        (lambda: TrainConfig(lr_schedule="exponential"), "lr-schedule must be one of constant"),
        (lambda: TrainConfig(clip_norm=0), r"clip-norm must be in \(0, inf\)"),
        (lambda: SamplingConfig(beam_width=2, num_return=3), "num-return must be an integer >= 1 and <= 2"),
        (lambda: SamplingConfig(stop=("",)), "stop strings must not be empty"),
        (lambda: SamplingConfig(engine="torch"), "engine must be one of auto, numpy, keras"),
        (lambda: TokenizerConfig(level="byte"), "level must be one of char, word"),
        (lambda: TokenizerConfig(max_vocab=1), "max-vocab must be an integer >= 2"),
        (lambda: TokenizerConfig(min_count=0), "min-count must be an integer >= 1"),
        (lambda: TrainConfig(seq_length=0), "seq-length must be an integer >= 1"),
        (lambda: TrainConfig(batch_size=0), "batch-size must be an integer >= 1"),
        (lambda: TrainConfig(epochs=0), "epochs must be an integer >= 1"),
        (lambda: TrainConfig(learning_rate=0), r"learning-rate must be in \(0, 10\]"),
        (lambda: TrainConfig(precision="float8"), "precision must be one of auto"),
        (lambda: TrainConfig(patience=0), "patience must be an integer >= 1"),
        (lambda: CorpusConfig(sources=()), "no corpus given"),
        (lambda: CorpusConfig(sources=("a",), validation_fraction=0.9), "validation-fraction"),
        (lambda: CorpusConfig(sources=("a",), encoding="klingon"), "unknown encoding 'klingon'"),
        (lambda: SamplingConfig(temperature=-1), r"temperature must be in \[0, 100\]"),
        (lambda: SamplingConfig(length=-1), "length must be an integer >= 0"),
        (lambda: SamplingConfig(num_samples=0), "num-samples must be an integer >= 1"),
    ],
)
def test_bad_values_name_the_value_and_the_allowed_ones(build, message):
    with pytest.raises(TextgenError, match=message):
        build()


def test_temperature_zero_selects_greedy():
    assert SamplingConfig(temperature=0).strategy == "greedy"
    assert SamplingConfig(temperature=0.8).strategy == "random"
    assert SamplingConfig(beam_width=4).strategy == "beam"


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1.5h", 5400), ("45", 45)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "5d", "-3s", "0s"])
def test_parse_duration_rejects_nonsense(text):
    with pytest.raises(TextgenError, match="time budget"):
        parse_duration(text)


def test_epochs_default_to_about_a_fixed_number_of_steps():
    assert TrainConfig().epochs_for(steps_per_epoch=313) == 13  # ceil(4000 / 313)
    assert TrainConfig().epochs_for(steps_per_epoch=8) == 500
    assert TrainConfig().epochs_for(steps_per_epoch=5000) == 1
    assert TrainConfig(epochs=3).epochs_for(steps_per_epoch=8) == 3


def test_config_json_written_before_the_renames_still_reads():
    # config.json files of textgen before settings were spelled as their flags.
    assert ModelConfig.from_dict({"cell": "gru", "num_layers": 3, "dropout_rate": 0.2}) == ModelConfig(
        cell="gru", layers=3, dropout=0.2
    )
    assert TrainConfig.from_dict({"learning_rate_schedule": "linear"}).lr_schedule == "linear"
    assert "num_layers" not in ModelConfig().to_dict()  # only the new spelling is written


def test_a_duration_string_is_parsed_on_the_field():
    assert TrainConfig(time_budget="2m").time_budget == 120.0
    assert TrainConfig(time_budget=95).time_budget == 95


def test_training_settings_have_one_owner_each_and_split_into_configs():
    names = [field.name for cls in TRAINING_SETTINGS for field in dataclasses.fields(cls)]
    assert len(names) == len(set(names))  # so textgen.train(units=..., seed=...) is unambiguous
    configs = training_configs({"units": 32, "level": "word", "seed": 3, "sources": ("a.txt",)})
    assert configs[ModelConfig].units == 32 and configs[TokenizerConfig].level == "word"
    assert configs[TrainConfig].seed == 3 and configs[CorpusConfig].sources == ("a.txt",)
    with pytest.raises(TextgenError, match="unknown setting 'colour'"):
        training_configs({"colour": "red"})


def test_the_engine_choices_are_the_registry():
    from textgen.generation.engines import ENGINES

    engine = next(field for field in dataclasses.fields(SamplingConfig) if field.name == "engine")
    assert engine.metadata["rule"].choices == ("auto", *ENGINES)


def test_sources_may_be_one_path():
    from pathlib import Path

    assert CorpusConfig(sources=Path("notes.txt")).sources == ("notes.txt",)
    assert CorpusConfig(sources="notes.txt").sources == ("notes.txt",)
    with pytest.raises(TextgenError, match="must be a file name"):
        CorpusConfig(sources=(3,))
