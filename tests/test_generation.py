import numpy as np
import pytest

from textgen.errors import TextgenError
from textgen.generation import load


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
