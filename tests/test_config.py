import pytest

from textgen.config import (
    CorpusConfig, ModelConfig, SamplingConfig, TokenizerConfig, TrainConfig, parse_duration,
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
        (lambda: ModelConfig(num_layers=0), "layers must be an integer >= 1"),
        (lambda: ModelConfig(units=-3), "units must be an integer >= 1"),
        (lambda: ModelConfig(dropout_rate=1.0), r"dropout must be in \[0, 1\)"),
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
