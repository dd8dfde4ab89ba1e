import keras
import numpy as np
import pytest

from textgen.config import ModelConfig
from textgen.model import build_model, compile_for_training


@pytest.mark.parametrize("cell, layer_class", [("simple_rnn", "SimpleRNN"), ("lstm", "LSTM"), ("gru", "GRU")])
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_each_cell_builds_and_gives_float32_logits(cell, layer_class, precision):
    config = ModelConfig(cell=cell, layers=2, units=8, embedding_dim=4, dropout=0.1)
    model = build_model(config, vocabulary_size=11, precision=precision)
    logits = model(np.zeros((3, 7), dtype=np.int32))
    assert tuple(logits.shape) == (3, 7, 11)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    recurrent = [layer for layer in model.layers if type(layer).__name__ == layer_class]
    assert len(recurrent) == 2
    assert all(layer.dtype_policy.name == precision for layer in recurrent)
    assert sum(type(layer).__name__ == "Dropout" for layer in model.layers) == 2


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_recurrent_layers_keep_the_cudnn_kernel_eligible(cell):
    model = build_model(ModelConfig(cell=cell, units=8, embedding_dim=4), vocabulary_size=5)
    for layer in model.layers:
        if type(layer).__name__ in ("SimpleRNN", "LSTM", "GRU"):
            config = layer.get_config()
            assert config["activation"] == "tanh" and config["use_bias"]
            assert config["recurrent_dropout"] == 0 and not config["unroll"]
            if cell != "simple_rnn":
                assert config["recurrent_activation"] == "sigmoid"
            if cell == "gru":
                assert config["reset_after"]


def test_only_built_in_layers():
    model = build_model(ModelConfig(dropout=0.2, units=8, embedding_dim=4), vocabulary_size=5)
    names = {type(layer).__name__ for layer in model.layers}
    assert names <= {"InputLayer", "Embedding", "LSTM", "Dropout", "Dense"}


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_stateful_model_carries_its_state_like_one_long_sequence(cell):
    config = ModelConfig(cell=cell, layers=2, units=8, embedding_dim=4)
    plain = build_model(config, vocabulary_size=11)
    stateful = build_model(config, vocabulary_size=11, stateful_batch_size=3)
    assert [w.shape for w in stateful.get_weights()] == [w.shape for w in plain.get_weights()]
    stateful.set_weights(plain.get_weights())
    tokens = np.random.default_rng(0).integers(0, 11, size=(3, 12)).astype(np.int32)
    whole = np.asarray(plain(tokens))  # (3, 12, 11), from a zero state
    halves = [np.asarray(stateful(tokens[:, :6])), np.asarray(stateful(tokens[:, 6:]))]
    np.testing.assert_allclose(np.concatenate(halves, axis=1), whole, atol=1e-5)
    for layer in stateful.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()
    np.testing.assert_allclose(np.asarray(stateful(tokens[:, 6:])), np.asarray(plain(tokens[:, 6:])), atol=1e-5)


def adam_by_hand(gradients, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Keras's Adam on one scalar variable starting at 0, step by step."""
    x = m = v = 0.0
    for step, gradient in enumerate(gradients, start=1):
        m = beta_1 * m + (1 - beta_1) * gradient
        v = beta_2 * v + (1 - beta_2) * gradient**2
        alpha = learning_rate * np.sqrt(1 - beta_2**step) / (1 - beta_1**step)
        x -= alpha * m / (np.sqrt(v) + epsilon)
    return x


def test_gradients_are_clipped_by_their_global_norm():
    model = build_model(ModelConfig(units=8, embedding_dim=4), vocabulary_size=5)
    compile_for_training(model, learning_rate=0.1, clip_norm=0.5, precision="float32")
    a, b = keras.Variable(0.0), keras.Variable(0.0)
    # Step 1: gradients (3, 4), global norm 5, scaled to norm 0.5 -> (0.3, 0.4); step 2: (0.2, 0.1), left alone.
    for gradients in ([3.0, 4.0], [0.2, 0.1]):
        model.optimizer.apply([keras.ops.convert_to_tensor(g) for g in gradients], [a, b])
    # (Keras adds epsilon at a slightly different place: agreement to 1e-5, far inside the 1e-3 below.)
    assert abs(float(a) - adam_by_hand([0.3, 0.2], 0.1)) < 1e-5 and abs(float(b) - adam_by_hand([0.4, 0.1], 0.1)) < 1e-5
    # Unclipped (or each variable clipped on its own) the result is another: the test can tell.
    assert abs(adam_by_hand([3.0, 0.2], 0.1) - adam_by_hand([0.3, 0.2], 0.1)) > 1e-3
    assert abs(adam_by_hand([0.5, 0.2], 0.1) - adam_by_hand([0.3, 0.2], 0.1)) > 1e-3
