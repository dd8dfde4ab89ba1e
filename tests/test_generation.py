import numpy as np
import pytest

from textgen.errors import TextgenError
from textgen.generation.generator import StopScanner, load
from textgen.generation.strategies import log_softmax


def test_same_seed_same_text_and_prompt_first(tiny_model):
    directory, _ = tiny_model
    generator = load(directory)
    first = generator.generate("The ", length=60, temperature=0.8, seed=7)
    assert first == generator.generate("The ", length=60, temperature=0.8, seed=7)
    assert first.startswith("The ") and len(first) == 64
    assert first != generator.generate("The ", length=60, temperature=0.8, seed=8)


def test_stream_pieces_join_to_generate(tiny_model):
    directory, _ = tiny_model
    generator = load(directory)
    pieces = list(generator.stream("A", length=30, temperature=1.0, seed=3))
    assert "A" + "".join(pieces) == generator.generate("A", length=30, temperature=1.0, seed=3)


def test_temperature_zero_is_greedy_on_the_engine(tiny_model):
    directory, _ = tiny_model
    generator = load(directory)
    engine, tokenizer = generator.engine, generator.tokenizer
    logits, state = engine.run(tokenizer.encode("The")[np.newaxis], engine.initial_state(1))
    logits, expected = logits[:, -1], []
    for _ in range(25):
        token = int(np.argmax(logits[0]))
        expected.append(token)
        logits, state = engine.step(np.array([token]), state)
    assert generator.generate("The", length=25, temperature=0) == "The" + tokenizer.decode(expected)


def test_num_samples_gives_distinct_samples(tiny_model):
    directory, _ = tiny_model
    samples = load(directory).generate("", length=40, num_samples=3, seed=5)
    assert len(samples) == 3 and len(set(samples)) == 3


def test_prompt_with_unknown_characters_fails(tiny_model):
    directory, _ = tiny_model
    with pytest.raises(TextgenError, match="not in the model's vocabulary: 'Ж'"):
        load(directory).generate("Жили", length=5)


def test_stop_string_ends_the_sample_and_is_not_printed(tiny_model):
    directory, _ = tiny_model
    generator = load(directory)
    free = generator.sample(prompt="The", length=200, seed=4)[0].text
    marker = free[20:22]  # a stop string we know this sample writes
    stopped = generator.sample(prompt="The", length=200, seed=4, stop=(marker,))[0]
    assert stopped.stopped and stopped.text == free[: free.index(marker)]
    pieces = "".join(generator.stream("The", length=200, seed=4, stop=[marker]))
    assert pieces == stopped.text


def test_stop_scanner_holds_back_possible_starts():
    scanner = StopScanner(["END"])
    assert scanner.feed("abcE") == "abc"  # "E" might start "END"
    assert scanner.feed("N") == ""
    assert scanner.feed("X") == "ENX"  # it did not
    assert scanner.feed("yyEN") == "yy"
    assert scanner.feed("D and more") == "" and scanner.stopped
    assert StopScanner(["\n\n"]).flush() == ""


def test_log_probability_is_the_models_own(tiny_model):
    directory, _ = tiny_model
    generator = load(directory)
    result = generator.sample(prompt="The", length=15, seed=2, temperature=0.7, top_k=5)[0]
    ids = generator.tokenizer.encode("The" + result.text)
    logits, _ = generator.engine.run(ids[np.newaxis, :-1], generator.engine.initial_state(1))
    log_p = log_softmax(logits[0])
    expected = sum(log_p[position, ids[position + 1]] for position in range(2, len(ids) - 1))
    assert result.tokens == 15 and abs(result.log_probability - expected) < 1e-6


def test_beam_search_through_the_generator(tiny_model):
    directory, _ = tiny_model
    generator = load(directory)
    beams = generator.sample(prompt="The", length=12, beam_width=4, num_return=3)
    assert len(beams) == 3 and [b.log_probability for b in beams] == sorted([b.log_probability for b in beams])[::-1]
    greedy = generator.generate("The", length=12, temperature=0)
    greedy_log_probability = generator.sample(prompt="The", length=12, temperature=0)[0].log_probability
    assert beams[0].log_probability >= greedy_log_probability - 1e-9  # equal when greedy is best (sums' rounding)
    assert greedy.startswith("The")
    with pytest.raises(TextgenError, match="larger than the vocabulary"):
        generator.sample(beam_width=1000)


def test_keras_engine_matches_numpy_engine(tiny_model):
    directory, _ = tiny_model
    numpy_generator, keras_generator = load(directory, engine="numpy"), load(directory, engine="keras")
    tokens = numpy_generator.tokenizer.encode("The river")[np.newaxis].repeat(2, axis=0)
    expected, _ = numpy_generator.engine.run(tokens, numpy_generator.engine.initial_state(2))
    logits, _ = keras_generator.engine.run(tokens, keras_generator.engine.initial_state(2))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert keras_generator.generate("The", length=40, temperature=0) == numpy_generator.generate(
        "The", length=40, temperature=0)


def test_word_level_prompt_with_unknown_words_warns(tmp_path):
    from textgen.saved import artifacts
    from textgen.config import CorpusConfig, ModelConfig, TokenizerConfig, TrainConfig
    from textgen.training.loop import train
    from textgen.data.training_text import prepare_training_text

    from conftest import make_text

    corpus = tmp_path / "words.txt"
    corpus.write_text(make_text(lines=200))
    corpus_config, tokenizer_config = CorpusConfig(sources=(str(corpus),)), TokenizerConfig(level="word")
    train_config = TrainConfig(seq_length=10, batch_size=8, epochs=1, precision="float32")
    text, train_config = prepare_training_text(corpus_config, tokenizer_config, train_config)
    directory = tmp_path / "model"
    with artifacts.new_model_directory(directory):
        train(text, directory=directory, model_config=ModelConfig(units=8, embedding_dim=4, num_layers=1),
              tokenizer_config=tokenizer_config, train_config=train_config, corpus_config=corpus_config,
              verbose=0, echo=lambda line: None)
    generator = load(directory)
    with pytest.warns(UserWarning, match="not in the model's vocabulary, read as <unk>: 'zebra'"):
        result = generator.generate("the zebra", length=10, seed=1)
    assert result.startswith("the zebra") and "<unk>" not in result[len("the zebra"):]
