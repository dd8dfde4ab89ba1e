import keras
import numpy as np
import pytest

from textgen.config import ModelConfig
from textgen.model import build_model, compile_for_training


@pytest.mark.parametrize("cell, layer_class", [("simple_rnn", "SimpleRNN"), ("lstm", "LSTM"), ("gru", "GRU")])
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_each_cell_builds_and_gives_float32_logits(cell, layer_class, precision):
    config = ModelConfig(cell=cell, num_layers=2, units=8, embedding_dim=4, dropout_rate=0.1)
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
    model = build_model(ModelConfig(dropout_rate=0.2, units=8, embedding_dim=4), vocabulary_size=5)
    names = {type(layer).__name__ for layer in model.layers}
    assert names <= {"InputLayer", "Embedding", "LSTM", "Dropout", "Dense"}


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_stateful_model_carries_its_state_like_one_long_sequence(cell):
    config = ModelConfig(cell=cell, num_layers=2, units=8, embedding_dim=4)
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


def test_gradients_are_clipped_by_their_global_norm():
    model = build_model(ModelConfig(units=8, embedding_dim=4), vocabulary_size=5)
    compile_for_training(model, learning_rate=0.01, clip_norm=0.5, precision="float32")
    assert model.optimizer.global_clipnorm == 0.5 and model.optimizer.clipnorm is None
