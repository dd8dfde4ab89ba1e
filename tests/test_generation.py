import numpy as np
import pytest

from textgen.errors import TextgenError
from textgen.generation.generator import load
from textgen.generation.probabilities import log_softmax
from textgen.generation.stop_strings import StopScanner


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
    # To float32 rounding: the run reads 17 rows in one product, the steps one row each, and the
    # engine may multiply the two through different libraries (hardware/onednn_products.py). The
    # strategy's own log-probabilities (temperature 0.7, top-k 5) would differ by whole units.
    assert result.tokens == 15 and abs(result.log_probability - expected) < 1e-5


def test_beam_search_through_the_generator(tiny_model):
    directory, _ = tiny_model
    generator = load(directory)
    beams = generator.sample(prompt="The", length=12, beam_width=4, num_return=3)
    assert len(beams) == 3 and [b.log_probability for b in beams] == sorted([b.log_probability for b in beams])[::-1]
    greedy = generator.sample(prompt="The", length=12, temperature=0)[0]
    # Equal when greedy is best; the two sums round differently (float32 logits, float64 sums).
    assert beams[0].log_probability >= greedy.log_probability * (1 + 1e-7)
    assert len(beams[0].text) == 12 and beams[0].tokens == 12
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
        "The", length=40, temperature=0
    )


def test_word_level_prompt_with_unknown_words_warns(tiny_word_model):
    generator = load(tiny_word_model[0])
    with pytest.warns(UserWarning, match="not in the model's vocabulary, read as <unk>: 'zebra'"):
        result = generator.generate("the zebra", length=10, seed=1)
    assert result.startswith("the zebra") and "<unk>" not in result[len("the zebra") :]


def test_textgen_load_takes_an_engine(tiny_model):
    import textgen
    from textgen.generation.keras_engine import KerasEngine
    from textgen.generation.numpy_engine import NumpyEngine

    directory, _ = tiny_model
    assert isinstance(textgen.load(directory).engine, NumpyEngine)  # auto: numpy, the faster one measured
    assert isinstance(textgen.load(directory, engine="auto").engine, NumpyEngine)
    assert isinstance(textgen.load(directory, engine="numpy").engine, NumpyEngine)
    assert isinstance(textgen.load(directory, engine="keras").engine, KerasEngine)
    with pytest.raises(TextgenError, match="engine must be one of auto, numpy, keras; got 'torch'"):
        textgen.load(directory, engine="torch")


def test_beam_search_on_the_keras_engine_equals_numpy(tiny_model):
    directory, _ = tiny_model
    options = dict(prompt="The", length=15, beam_width=5, num_return=3)
    numpy_beams = load(directory, engine="numpy").sample(**options)
    keras_beams = load(directory, engine="keras").sample(**options)
    assert [beam.text for beam in keras_beams] == [beam.text for beam in numpy_beams]
    np.testing.assert_allclose(
        [beam.log_probability for beam in keras_beams], [beam.log_probability for beam in numpy_beams], rtol=1e-4
    )


def test_stream_refuses_beams(tiny_model):
    with pytest.raises(TextgenError, match="use sample"):
        list(load(tiny_model[0]).stream("The", beam_width=3))


@pytest.mark.parametrize("options", [{}, {"stop": ["zzz"]}, {"beam_width": 3}])
def test_a_cancel_event_set_mid_way_ends_the_sampling_with_no_samples(tiny_model, options):
    import threading

    directory, _ = tiny_model
    generator = load(directory)
    cancel, original_step, steps = threading.Event(), generator.engine.step, []

    def step(tokens, state):  # another thread's set() lands between two steps
        steps.append(len(tokens))
        if len(steps) == 5:
            cancel.set()
        return original_step(tokens, state)

    generator.engine.step = step
    assert generator.sample(length=500, seed=1, cancel=cancel, **options) == []
    assert len(steps) <= 6  # not the 500 steps asked for
    cancel.clear()
    assert len(generator.sample(length=20, seed=1, cancel=cancel, **options)[0].text) > 0


def test_at_temperature_1_the_draw_shares_the_normalizers_exponentials_and_draws_the_same(tiny_model, monkeypatch):
    from textgen.generation import strategies

    directory, _ = tiny_model
    generator = load(directory)
    assert generator.tokenizer.unknown_id is None  # char level: no <unk> to hide from the draw
    exponentials, counted = [], strategies.shifted_exponentials
    monkeypatch.setattr(strategies, "shifted_exponentials", lambda logits: exponentials.append(1) or counted(logits))
    shared = generator.sample(num_samples=3, length=60, seed=4)
    assert exponentials == []  # the draw took the generator's
    original = strategies.RandomSampler.__init__

    def apart(self, processors=()):
        original(self, processors)
        self.draws_from_the_model = False

    monkeypatch.setattr(strategies.RandomSampler, "__init__", apart)
    separate = generator.sample(num_samples=3, length=60, seed=4)
    assert len(exponentials) == 60
    assert [(s.text, s.log_probability) for s in shared] == [(s.text, s.log_probability) for s in separate]


@pytest.mark.parametrize("options", [{}, {"stop": ["zz"]}, {"temperature": 0}])
def test_n_tokens_take_n_minus_one_steps_after_the_prompt(tiny_model, monkeypatch, options):
    directory, _ = tiny_model
    generator = load(directory, engine="numpy")
    expected = generator.generate("The ", length=40, seed=2, **options)
    steps, step = [], generator.engine.step
    monkeypatch.setattr(generator.engine, "step", lambda tokens, state: steps.append(1) or step(tokens, state))
    assert generator.generate("The ", length=40, seed=2, **options) == expected  # the same text
    assert len(steps) == 39  # the first token comes from the prompt's logits; none is stepped past the last
