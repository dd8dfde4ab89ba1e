"""examples/simple_rnn_backprop.py: the NumPy BPTT against finite differences and TensorFlow's gradients."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

# The example is a file to read, not part of the package: loaded from its path.
_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "simple_rnn_backprop.py"
_SPEC = importlib.util.spec_from_file_location("simple_rnn_backprop", _EXAMPLE)
bptt = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bptt)


@pytest.fixture
def problem():
    rng = np.random.default_rng(5)
    parameters = bptt.initialize(vocabulary_size=7, embedding_dim=4, units=5, seed=3)
    tokens = rng.integers(0, 7, size=(3, 7))
    return parameters, tokens[:, :-1], tokens[:, 1:]


@pytest.mark.parametrize("name", bptt.PARAMETERS)
def test_gradients_match_finite_differences(problem, name):
    parameters, inputs, targets = problem
    _, cache = bptt.forward(parameters, inputs, targets)
    analytic = bptt.backward(parameters, cache)[name]
    numeric = np.zeros_like(analytic)
    epsilon = 1e-6
    for index in np.ndindex(*analytic.shape):
        original = parameters[name][index]
        parameters[name][index] = original + epsilon
        plus, _ = bptt.forward(parameters, inputs, targets)
        parameters[name][index] = original - epsilon
        minus, _ = bptt.forward(parameters, inputs, targets)
        parameters[name][index] = original
        numeric[index] = (plus - minus) / (2 * epsilon)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_gradients_match_tensorflow(problem):
    parameters, inputs, targets = problem
    loss, cache = bptt.forward(parameters, inputs, targets)
    ours = bptt.backward(parameters, cache)

    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(7, 4, dtype="float64")(tokens)
    hidden = keras.layers.SimpleRNN(5, return_sequences=True, dtype="float64")(hidden)
    model = keras.Model(tokens, keras.layers.Dense(7, dtype="float64")(hidden))
    model.set_weights([parameters[name] for name in bptt.PARAMETERS])  # the same layout as Keras
    with tf.GradientTape() as tape:
        logits = model(inputs)
        keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")(targets, logits)
    theirs = tape.gradient(keras_loss, model.trainable_variables)
    assert abs(float(keras_loss) - loss) < 1e-10
    for name, gradient in zip(bptt.PARAMETERS, theirs):
        gradient = tf.convert_to_tensor(gradient).numpy()  # the embedding's gradient comes sparse
        np.testing.assert_allclose(ours[name], gradient, rtol=1e-7, atol=1e-10, err_msg=name)


def test_a_few_steps_of_gradient_descent_lower_the_loss(problem):
    parameters, inputs, targets = problem
    first, _ = bptt.forward(parameters, inputs, targets)
    for _ in range(30):
        _, cache = bptt.forward(parameters, inputs, targets)
        for name, gradient in bptt.backward(parameters, cache).items():
            parameters[name] -= 0.5 * gradient
    last, _ = bptt.forward(parameters, inputs, targets)
    assert last < 0.7 * first
