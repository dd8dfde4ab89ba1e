"""oneDNN's fused inference layers (hardware/onednn_layers.py) against Keras and the NumPy cells."""

import numpy as np
import pytest
from test_engine_numpy import _onednn_products_or_skip, assert_steps_match_keras, random_keras_model

from textgen.hardware import onednn_layers, onednn_products
from textgen.hardware.onednn_layers import FusedLayers


def fused_engine(cell, tmp_path):
    """A random model's NumPy engine whose batches go through the fused layers (no trial)."""
    model, engine = random_keras_model(cell, tmp_path)
    products = _onednn_products_or_skip()
    engine.fused = FusedLayers(engine.embedding, engine.recurrent, widen=products.widen)
    engine.fused_tried = True
    return model, engine


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("batch_size", [8, 17])
def test_fused_layers_give_keras_logits_step_after_step(cell, batch_size, tmp_path):
    model, engine = fused_engine(cell, tmp_path)
    tokens = np.random.default_rng(6).integers(0, 13, size=(batch_size, 7)).astype(np.int32)
    assert_steps_match_keras(model, engine, tokens)
    rows = {8: 8, 17: 24}[batch_size]  # the stack's rows: the batch's, rounded up to a multiple of 8
    assert list(engine.fused.stacks) == [rows]  # the batch went through them
    assert all(layer.implementation for layer in engine.fused.stacks[rows].layers)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_prompts_read_together_go_through_the_fused_layers(cell, tmp_path):
    model, engine = fused_engine(cell, tmp_path)
    tokens = np.random.default_rng(12).integers(0, 13, size=(10, 6)).astype(np.int32)  # 10 prompts of 6
    logits, state = engine.run(tokens, engine.initial_state(10))
    np.testing.assert_allclose(logits, np.asarray(model(tokens)), rtol=1e-5, atol=1e-5)
    assert list(engine.fused.stacks) == [16]
    engine.fused = None  # the state it leaves is the cells' too
    _, cells_state = engine.run(tokens, engine.initial_state(10))
    for layer, cells_layer in zip(state, cells_state):
        for array, expected in zip(layer, cells_layer):
            np.testing.assert_allclose(array, expected, rtol=1e-5, atol=1e-6)


def test_a_single_stream_stays_in_the_cells(tmp_path):
    model, engine = fused_engine("lstm", tmp_path)
    tokens = np.random.default_rng(7).integers(0, 13, size=(1, 5)).astype(np.int32)
    assert_steps_match_keras(model, engine, tokens)
    assert not engine.fused.stacks


def test_the_callers_state_is_left_as_it_was(tmp_path):
    """A caller may keep a state it passed in (beam search, a batcher choosing rows): it must not change."""
    _, engine = fused_engine("lstm", tmp_path)
    rng = np.random.default_rng(8)
    state = [tuple(rng.normal(size=(9, 6)).astype(np.float32) for _ in layer) for layer in engine.initial_state(9)]
    kept = [tuple(array.copy() for array in layer) for layer in state]
    tokens = rng.integers(0, 13, size=9)
    first, next_state = engine.step(tokens, state)
    again, _ = engine.step(tokens, state)  # the same state twice: the same logits
    np.testing.assert_array_equal(first, again)
    for layer, copy in zip(state, kept):
        for array, original in zip(layer, copy):
            np.testing.assert_array_equal(array, original)
    assert all(new is not old for layer, old_layer in zip(next_state, state) for new, old in zip(layer, old_layer))


def test_rows_taken_out_of_a_bigger_batch_read_like_any_state(tmp_path):
    """A batcher drops finished rows between steps: views and strided rows of a state must work."""
    _, engine = fused_engine("gru", tmp_path)
    tokens = np.random.default_rng(9).integers(0, 13, size=16)
    _, state = engine.step(tokens, engine.initial_state(16))
    every_other = [tuple(array[::2] for array in layer) for layer in state]  # (8, units) views, strided
    logits, _ = engine.step(tokens[::2], every_other)
    engine.fused = None
    expected, _ = engine.step(tokens[::2], [tuple(np.ascontiguousarray(a) for a in layer) for layer in every_other])
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_batch_sizes_beyond_the_kept_ones_are_remade_and_the_kernels_shared(monkeypatch, tmp_path):
    monkeypatch.setattr(onednn_layers, "_MOST_BATCH_SIZES", 2)
    model, engine = fused_engine("lstm", tmp_path)
    tokens = np.random.default_rng(10).integers(0, 13, size=(25, 4)).astype(np.int32)
    expected = np.asarray(model(tokens))
    for batch in (8, 17, 25, 8, 12):  # stacks of 8, 24, 32, 8 and 16 rows
        state = engine.initial_state(batch)
        for t in range(tokens.shape[1]):
            logits, state = engine.step(tokens[:batch, t], state)
            np.testing.assert_allclose(logits, expected[:batch, t], rtol=1e-5, atol=1e-5)
    assert list(engine.fused.stacks) == [8, 16]  # the two used last
    # one reordered copy per kernel and layout, however many batch sizes picked it
    copies, equal = engine.fused.kernels.copies, engine.fused.onednn.library.dnnl_memory_desc_equal
    kernels = {(index, name) for index, name, _, _ in copies}
    assert kernels == {(index, name) for index in (0, 1) for name in ("weights_layer", "weights_iter")}
    for first, (index, name, layout, _) in enumerate(copies):
        assert not any(equal(layout, other[2]) for other in copies[first + 1 :] if other[:2] == (index, name))
    # and one scratchpad for all, big enough for each
    scratchpad = engine.fused.scratchpad
    for stack in engine.fused.stacks.values():
        assert all(layer.fixed["scratchpad"] is scratchpad for layer in stack.layers)
        assert all(layer.scratchpad_bytes <= scratchpad.nbytes for layer in stack.layers)


def test_a_refused_primitive_sends_the_engine_back_to_its_cells(monkeypatch, tmp_path):
    model, engine = fused_engine("simple_rnn", tmp_path)

    def refuse(*arguments, **keywords):
        raise RuntimeError("oneDNN lbr_gru primitive_desc_create failed with status 3")

    monkeypatch.setattr(onednn_layers, "_Stack", refuse)
    tokens = np.random.default_rng(11).integers(0, 13, size=(8, 3)).astype(np.int32)
    assert_steps_match_keras(model, engine, tokens)
    assert engine.fused is None


def test_the_trial_keeps_the_fused_layers_only_where_they_are_faster(monkeypatch):
    candidate = _onednn_products_or_skip()
    monkeypatch.setattr(onednn_products, "_onednn_products", lambda: candidate)
    monkeypatch.setattr(onednn_products, "OPENBLAS_SPIN_SECONDS", 0.0)
    for fused_seconds, kept in ((1.0, True), (3.0, False)):
        fastest = onednn_products.FastestProducts()
        fastest.chosen = onednn_products.NUMPY_PRODUCTS  # the products' trial chose NumPy's
        timed = []

        def seconds_with(products, fused_seconds=fused_seconds, timed=timed):
            timed.append(products)
            return 2.0 if products is None else fused_seconds

        assert fastest.choose_fused(seconds_with) is kept
        assert timed == [None, candidate]  # the cells, then the fused layers through oneDNN's products
        assert fastest.chosen is (candidate if kept else onednn_products.NUMPY_PRODUCTS)


def test_a_trial_whose_fused_layers_are_refused_keeps_the_cells(monkeypatch):
    candidate = _onednn_products_or_skip()
    monkeypatch.setattr(onednn_products, "_onednn_products", lambda: candidate)
    fastest = onednn_products.FastestProducts()
    fastest.chosen = candidate

    def seconds_with(products):
        if products is not None:
            raise RuntimeError("oneDNN refused the fused layers")
        return 1.0

    assert fastest.choose_fused(seconds_with) is False
    assert fastest.chosen is candidate


def test_the_fused_layers_write_the_text_the_cells_write(tiny_model):
    """Their numbers are oneDNN's (its tanh, its summation order), within ~1e-7 of the cells': seeded
    samples of a trained model come out the same either way."""
    import textgen

    generator = textgen.load(tiny_model[0], engine="numpy")
    engine, products = generator.engine, _onednn_products_or_skip()
    engine.fused_tried = True  # no trial: each way by hand
    settings = dict(num_samples=16, length=200, temperature=0.9, seed=3)
    cells = [sample.text for sample in generator.sample(**settings)]
    engine.fused = FusedLayers(engine.embedding, engine.recurrent, widen=products.widen)
    fused = [sample.text for sample in generator.sample(**settings)]
    assert fused == cells and len(set(cells)) == 16
    assert list(engine.fused.stacks) == [16]  # the batch went through them
