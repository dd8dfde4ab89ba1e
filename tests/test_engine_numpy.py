"""The NumPy equations against Keras's own layers: same logits to 1e-5."""

import numpy as np
import pytest

from textgen.config import ModelConfig
from textgen.generation.numpy_engine import NumpyEngine
from textgen.model import build_model
from textgen.saved.keras_archive import Network, expected_weights, read_keras_archive


def random_keras_model(cell, tmp_path, vocabulary_size=13):
    config = ModelConfig(cell=cell, layers=2, units=6, embedding_dim=5, dropout=0.3)
    model = build_model(config, vocabulary_size)
    rng = np.random.default_rng(0)
    # Random weights everywhere (biases too), large enough that every gate matters.
    model.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    path = tmp_path / "model.keras"
    model.save(path)
    layers, _ = read_keras_archive(path, expected_weights(config, vocabulary_size))
    return model, NumpyEngine(Network.from_layers(layers))


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_run_matches_keras(cell, tmp_path):
    model, engine = random_keras_model(cell, tmp_path)
    tokens = np.random.default_rng(1).integers(0, 13, size=(3, 9)).astype(np.int32)
    expected = np.asarray(model(tokens))
    logits, _ = engine.run(tokens, engine.initial_state(3))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("batch_size", [2, 8, 17])  # from 8 on the engine multiplies in the transposed layout
def test_steps_with_carried_state_match_keras(cell, batch_size, tmp_path):
    model, engine = random_keras_model(cell, tmp_path)
    tokens = np.random.default_rng(2).integers(0, 13, size=(batch_size, 7)).astype(np.int32)
    expected = np.asarray(model(tokens))  # (batch, time, vocab)
    state = engine.initial_state(batch_size)
    for t in range(tokens.shape[1]):
        logits, state = engine.step(tokens[:, t], state)
        np.testing.assert_allclose(logits, expected[:, t], rtol=1e-5, atol=1e-5)


def test_run_in_chunks_equals_one_run(tmp_path):
    _, engine = random_keras_model("lstm", tmp_path)
    tokens = np.random.default_rng(3).integers(0, 13, size=(1, 20)).astype(np.int32)
    whole, _ = engine.run(tokens, engine.initial_state(1))
    first, state = engine.run(tokens[:, :8], engine.initial_state(1))
    second, _ = engine.run(tokens[:, 8:], state)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("batch_size", [2, 17])  # plain (C order) and transposed (Fortran order) gates
def test_onednn_activations_give_keras_logits(cell, batch_size, tmp_path):
    from textgen.hardware.onednn import onednn_status
    from textgen.hardware.onednn_activations import OneDNNActivations

    onednn, reason = onednn_status()
    if onednn is None:
        pytest.skip(reason)
    model, engine = random_keras_model(cell, tmp_path)
    for layer in engine.cells:  # every sigmoid and tanh through oneDNN's logistic, whatever its size
        layer.activations = OneDNNActivations(onednn)
    tokens = np.random.default_rng(3).integers(0, 13, size=(batch_size, 7)).astype(np.int32)
    expected = np.asarray(model(tokens))
    state = engine.initial_state(batch_size)
    for t in range(tokens.shape[1]):
        logits, state = engine.step(tokens[:, t], state)
        np.testing.assert_allclose(logits, expected[:, t], rtol=1e-5, atol=1e-5)


def test_the_fastest_activations_keep_numpys_numbers_at_every_size():
    from textgen.cells import NUMPY_ACTIVATIONS
    from textgen.hardware.onednn_activations import FASTEST, SMALLEST

    rng = np.random.default_rng(4)
    for shape in [(3, 40), (64, 1024), (1024, 64)]:
        for order in "CF":
            x = np.asarray(rng.normal(0, 4, shape), np.float32, order=order)
            np.testing.assert_allclose(FASTEST.tanh(x), np.tanh(x), atol=3e-7)
            np.testing.assert_allclose(FASTEST.sigmoid_(x.copy(order="A")), 1 / (1 + np.exp(-x)), atol=3e-7)
            gates = x.copy(order="A")
            FASTEST.gates_(gates, shape[1] // 2)
            expected = NUMPY_ACTIVATIONS.gates_(x.copy(order="A"), shape[1] // 2)
            np.testing.assert_allclose(gates, expected, atol=3e-7)
    assert (3 * 40 < SMALLEST) and FASTEST._for(np.zeros((3, 40), np.float32)) is NUMPY_ACTIVATIONS
