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


def assert_steps_match_keras(model, engine, tokens):
    """Step the engine through tokens (batch, time), state carried: each step's logits are Keras's."""
    expected = np.asarray(model(tokens))  # (batch, time, vocab)
    state = engine.initial_state(tokens.shape[0])
    for t in range(tokens.shape[1]):
        logits, state = engine.step(tokens[:, t], state)
        np.testing.assert_allclose(logits, expected[:, t], rtol=1e-5, atol=1e-5)
    return expected


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
    assert_steps_match_keras(model, engine, tokens)


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
    assert_steps_match_keras(model, engine, tokens)


def test_the_fastest_activations_keep_numpys_numbers_at_every_size():
    from textgen.cells import NUMPY_ACTIVATIONS
    from textgen.hardware.onednn_activations import FASTEST, SMALLEST

    rng = np.random.default_rng(4)
    for shape in [(3, 40), (64, 1024), (1024, 64)]:
        for order in "CF":
            x = np.asarray(rng.normal(0, 4, shape), np.float32, order=order)
            np.testing.assert_allclose(FASTEST.tanh(x), np.tanh(x), atol=3e-7)
            halves = np.asarray(x / 2, order=order)  # the cells keep a sigmoid's inputs halved
            np.testing.assert_allclose(FASTEST.sigmoid_of_halves_(halves), 1 / (1 + np.exp(-x)), atol=3e-7)
            gates = x.copy(order="A")
            FASTEST.gates_(gates, shape[1] // 2)
            expected = NUMPY_ACTIVATIONS.gates_(x.copy(order="A"), shape[1] // 2)
            np.testing.assert_allclose(gates, expected, atol=3e-7)
    assert (3 * 40 < SMALLEST) and FASTEST._for(np.zeros((3, 40), np.float32)) is NUMPY_ACTIVATIONS


def _onednn_products_or_skip():
    from textgen.cells import NUMPY_PRODUCTS
    from textgen.hardware.onednn_products import _onednn_products

    products = _onednn_products()
    if products is NUMPY_PRODUCTS:
        pytest.skip("oneDNN (or its OpenMP library) cannot be loaded here")
    return products


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("batch_size", [2, 17])  # a single stream's stacked [x, h] product, and x W, h U apart
def test_onednn_products_give_keras_logits(cell, batch_size, tmp_path):
    model, engine = random_keras_model(cell, tmp_path)
    engine.products = _onednn_products_or_skip()  # every product through oneDNN's sgemm, whatever its size
    for layer in engine.cells:
        layer.products = engine.products
    tokens = np.random.default_rng(5).integers(0, 13, size=(batch_size, 7)).astype(np.int32)
    expected = assert_steps_match_keras(model, engine, tokens)
    logits, _ = engine.run(tokens, engine.initial_state(batch_size))  # (batch, time) rows in one product
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_onednn_products_add_in_place_and_leave_what_they_cannot_read_to_numpy():
    products = _onednn_products_or_skip()
    rng = np.random.default_rng(6)
    inputs, kernel = rng.normal(size=(9, 5)).astype(np.float32), rng.normal(size=(5, 12)).astype(np.float32)
    out = rng.normal(size=(9, 3, 12)).astype(np.float32)  # a time slice of (batch, time, columns): rows spaced
    expected = out[:, 1] + inputs @ kernel
    assert products.multiply_add_(inputs, kernel, kernel.T.copy(), out[:, 1]) is not None
    np.testing.assert_allclose(out[:, 1], expected, rtol=1e-5, atol=1e-5)
    as_float64 = inputs.astype(np.float64)  # not sgemm's type: NumPy's product, the same numbers
    assert not products.fits(as_float64, kernel, out[:, 0])
    np.testing.assert_allclose(
        products.project(as_float64, kernel, kernel.T.copy(), np.ones(12, np.float32)), inputs @ kernel + 1, atol=1e-5
    )


def test_the_fastest_products_are_numpys_until_a_batch_and_then_one_library_for_all():
    from textgen.cells import NUMPY_PRODUCTS
    from textgen.hardware.onednn_products import QUIET_SECONDS, SMALLEST_BATCH, FastestProducts, OneDNNProducts

    fastest = FastestProducts()
    rng = np.random.default_rng(7)
    kernel, bias = rng.normal(size=(32, 40)).astype(np.float32), rng.normal(size=40).astype(np.float32)
    small = rng.normal(size=(SMALLEST_BATCH - 1, 32)).astype(np.float32)
    np.testing.assert_allclose(fastest.project(small, kernel, kernel.T.copy(), bias), small @ kernel + bias, atol=1e-5)
    assert fastest.chosen is None  # no trial for small batches
    big = rng.normal(size=(64, 32)).astype(np.float32)
    np.testing.assert_allclose(fastest.project(big, kernel, kernel.T.copy(), bias), big @ kernel + bias, atol=1e-5)
    assert fastest.chosen is NUMPY_PRODUCTS or isinstance(fastest.chosen, OneDNNProducts)
    assert fastest._for(small, kernel) is fastest.chosen  # while batches come, small products too: never a mix
    fastest.last_batch -= QUIET_SECONDS  # a second with no batch: a single stream is NumPy's again
    assert fastest._for(small, kernel) is NUMPY_PRODUCTS


def test_a_trial_whose_sgemm_fails_keeps_numpys_products(monkeypatch):
    from textgen.cells import NUMPY_PRODUCTS
    from textgen.hardware import onednn_products

    products = _onednn_products_or_skip()
    products.sgemm = lambda *arguments: 5  # a status other than success, as a broken library would return
    monkeypatch.setattr(onednn_products, "_onednn_products", lambda: products)
    monkeypatch.setattr(onednn_products, "OPENBLAS_SPIN_SECONDS", 0.0)
    assert onednn_products._measured_choice(onednn_products._product_trial(16, 8, 8)) is NUMPY_PRODUCTS


def test_the_engine_chooses_its_products_by_timing_whole_steps(monkeypatch, tmp_path):
    """One product alone can favour a library whose whole step is slower (Zen 2: oneDNN's sgemm tied
    on one product, and its steps took 1.36 ms against NumPy's 1.15): the engine times its steps."""
    import time

    from textgen.cells import NumpyProducts
    from textgen.generation import numpy_engine
    from textgen.hardware import onednn_products

    class FastProductSlowStep(NumpyProducts):  # NumPy's numbers; its x W + b and output layer slow
        def project(self, *arguments):
            time.sleep(0.003)
            return super().project(*arguments)

        def narrow(self):
            pass

        def widen(self):
            pass

    class SlowProduct(NumpyProducts):  # the baseline: slower on a product alone, faster in a step
        def multiply_add_(self, *arguments):
            time.sleep(0.001)
            return super().multiply_add_(*arguments)

    candidate, baseline, fastest = FastProductSlowStep(), SlowProduct(), onednn_products.FastestProducts()
    monkeypatch.setattr(onednn_products, "_onednn_products", lambda: candidate)
    monkeypatch.setattr(onednn_products, "NUMPY_PRODUCTS", baseline)
    monkeypatch.setattr(onednn_products, "OPENBLAS_SPIN_SECONDS", 0.0)
    assert onednn_products._measured_choice(onednn_products._product_trial(16, 8, 8)) is candidate  # one product
    monkeypatch.setattr(numpy_engine, "FASTEST_PRODUCTS", fastest)
    model, engine = random_keras_model("lstm", tmp_path)
    tokens = np.random.default_rng(9).integers(0, 13, size=(16, 3)).astype(np.int32)
    state = engine.initial_state(16)
    for t in range(tokens.shape[1]):  # the trial's steps leave the stream's own state and logits alone
        logits, state = engine.step(tokens[:, t], state)
    assert fastest.chosen is baseline
    np.testing.assert_allclose(logits, np.asarray(model(tokens))[:, -1], rtol=1e-5, atol=1e-5)
    assert all(part.products is fastest for part in (engine, *engine.cells))


def test_the_products_give_openmp_back_to_one_thread_when_numpy_takes_over(monkeypatch):
    from textgen.cells import NUMPY_PRODUCTS
    from textgen.hardware.onednn_products import QUIET_SECONDS, FastestProducts

    products = _onednn_products_or_skip()
    asked = []
    monkeypatch.setattr(products, "set_openmp_threads", asked.append)
    fastest = FastestProducts()
    fastest.chosen, fastest.last_batch = products, 0.0  # oneDNN won, and no batch came for a while
    rng = np.random.default_rng(8)
    big, kernel = rng.normal(size=(16, 8)).astype(np.float32), rng.normal(size=(8, 8)).astype(np.float32)
    fastest.multiply_add_(big, kernel, kernel.T.copy(), np.zeros((16, 8), np.float32))
    assert asked == [products.threads]  # a batch's product on every core
    fastest.last_batch -= QUIET_SECONDS
    assert fastest._for(big[:1], kernel) is NUMPY_PRODUCTS and asked[-1] == 1  # NumPy's again: one thread
    fastest._for(big[:1], kernel)
    assert asked.count(1) == 1  # asked once, not at every product
