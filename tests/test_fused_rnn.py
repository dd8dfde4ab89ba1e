"""The fused oneDNN layers against Keras's own: outputs, final states and every gradient."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_text, quiet, train_small

from textgen.training.fused_rnn import FUSED_LAYERS, choose_kernel, onednn_status
from textgen.training.onednn import padded_row

PLAIN_LAYERS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}

needs_onednn = pytest.mark.skipif(onednn_status()[0] is None, reason=f"no oneDNN here: {onednn_status()[1]}")


def outputs_and_gradients(layer, inputs, initial_state, output_weights, state_weights):
    """The layer's outputs and final states, and the gradients of a loss that uses all of them."""
    inputs = tf.constant(inputs)
    initial_state = [tf.constant(state) for state in initial_state]
    with tf.GradientTape() as tape:
        tape.watch([inputs, *initial_state])
        outputs, *states = layer(inputs, initial_state=initial_state, training=True)
        loss = tf.reduce_sum(outputs * output_weights) + sum(
            tf.reduce_sum(state * weight) for state, weight in zip(states, state_weights)
        )
    gradients = tape.gradient(loss, [inputs, *layer.trainable_variables, *initial_state])
    return [np.asarray(value) for value in (outputs, *states, *gradients)]


@needs_onednn
@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("batch, time, input_dim, units", [(1, 1, 3, 4), (5, 7, 3, 4), (8, 33, 16, 64), (3, 2, 9, 5)])
def test_the_fused_layer_computes_what_keras_computes(cell, batch, time, input_dim, units):
    rng = np.random.default_rng(batch * 100 + time)
    fused = FUSED_LAYERS[cell](units, return_sequences=True, return_state=True)
    plain = PLAIN_LAYERS[cell](units, return_sequences=True, return_state=True)
    inputs = rng.normal(size=(batch, time, input_dim)).astype(np.float32)
    state_count = 2 if cell == "lstm" else 1
    initial_state = [rng.normal(size=(batch, units)).astype(np.float32) for _ in range(state_count)]
    for layer in (fused, plain):
        layer(inputs)
    # Scaled by the fan-in, as Keras initializes: with larger recurrent weights the network is
    # chaotic and any two summation orders part ways after a dozen steps, Keras against itself too.
    weights = [(rng.normal(size=weight.shape) / np.sqrt(weight.shape[0] if weight.ndim == 2 else 4)).astype(np.float32)
               for weight in plain.get_weights()]  # fmt: skip
    fused.set_weights(weights)
    plain.set_weights(weights)
    output_weights = rng.normal(size=(batch, time, units)).astype(np.float32)
    state_weights = [rng.normal(size=(batch, units)).astype(np.float32) for _ in range(state_count)]
    ours = outputs_and_gradients(fused, inputs, initial_state, output_weights, state_weights)
    theirs = outputs_and_gradients(plain, inputs, initial_state, output_weights, state_weights)
    names = ["outputs", *(f"state {i}" for i in range(state_count)), "d inputs", "d kernel", "d recurrent kernel",
             "d bias", *(f"d initial state {i}" for i in range(state_count))]  # fmt: skip
    assert len(ours) == len(theirs) == len(names)
    for name, mine, expected in zip(names, ours, theirs):
        np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-5, err_msg=name)


@needs_onednn
def test_inference_matches_keras_and_weight_files_are_keras_own(tmp_path):
    # The held-out pass runs the fused forward too; the weight file loads into Keras's own model.
    layer = FUSED_LAYERS["lstm"](6, return_sequences=True)
    inputs = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    model = keras.Sequential([keras.Input((None, 3)), layer])
    model.save_weights(tmp_path / "fused.weights.h5")
    plain = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(6, return_sequences=True)])
    plain.load_weights(tmp_path / "fused.weights.h5")
    np.testing.assert_allclose(np.asarray(model(inputs)), np.asarray(plain(inputs)), rtol=1e-5, atol=1e-5)


def test_padded_rows_avoid_multiples_of_256_floats():
    assert [padded_row(n) for n in (64, 100, 256, 1024, 768)] == [64, 112, 272, 1040, 784]


def test_the_kernel_choice():
    available = onednn_status()[0] is not None
    assert choose_kernel("keras", precision="float32", gpu_available=False) == ("keras", None)
    assert choose_kernel("auto", precision="float32", gpu_available=True) == ("keras", None)  # cuDNN
    assert choose_kernel("auto", precision="mixed_bfloat16", gpu_available=False) == ("keras", None)
    kernel, note = choose_kernel("onednn", precision="mixed_bfloat16", gpu_available=False)
    assert kernel == "keras" and "trains in float32" in note
    assert choose_kernel("auto", precision="float32", gpu_available=False)[0] == ("onednn" if available else "keras")


def test_a_missing_library_falls_back_with_one_line(monkeypatch, tmp_path):
    from textgen.training import fused_rnn

    monkeypatch.setattr(fused_rnn, "_ONEDNN", None)
    monkeypatch.setattr(fused_rnn, "load_library", lambda: (None, "the onednn-cpu-gomp package is not installed"))
    kernel, note = choose_kernel("auto", precision="float32", gpu_available=False)
    assert kernel == "keras" and note.startswith("note: oneDNN's fused kernel is not available (the onednn")
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=100))
    lines = []
    result = train_small(corpus, tmp_path, echo=lines.append)
    assert result.kernel == "keras" and sum("not available" in line for line in lines) == 1


@needs_onednn
@pytest.mark.slow
def test_training_with_and_without_the_kernel_reaches_the_same_loss(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=600))
    settings = dict(epochs=3, units=32, layers=2, learning_rate=1e-2, seq_length=30, batch_size=16)
    fused = train_small(corpus, tmp_path, name="fused", kernel="onednn", **settings)
    plain = train_small(corpus, tmp_path, name="plain", kernel="keras", **settings)
    assert (fused.kernel, plain.kernel) == ("onednn", "keras")
    # The same data order and initial weights: the two runs differ only in float rounding.
    for mine, theirs in zip(fused.epochs, plain.epochs):
        assert abs(mine["val_loss"] - theirs["val_loss"]) < 0.02 * theirs["val_loss"], (mine, theirs)
    assert fused.epochs[-1]["val_loss"] < fused.epochs[0]["val_loss"]  # it learns
    config = json.loads((fused.directory / "config.json").read_text())
    assert config["train"]["kernel"] == "onednn"
    with_keras = keras.models.load_model(fused.directory / "model.keras")  # a plain Keras model, our own file
    assert {type(layer).__module__.split(".")[0] for layer in with_keras.layers} == {"keras"}


@needs_onednn
def test_a_stateful_fused_run_and_its_resume(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=300))
    first = train_small(corpus, tmp_path, name="run", stateful=True, kernel="onednn", epochs=2, time_budget=0.5,
                        checkpoint_every=3)  # fmt: skip
    assert first.kernel == "onednn"
    import textgen

    second = textgen.train(corpus, name="run", root=tmp_path, resume=True, epochs=2, echo=quiet)
    assert second.epochs[-1]["val_loss"] > 0 and second.epochs[-1]["run"] == 2
