"""The fused oneDNN layers against Keras's own: outputs, final states and every gradient."""

import functools
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_text, quiet, train_small

from textgen.config import TrainConfig
from textgen.errors import TextgenError
from textgen.hardware.fused_rnn import FUSED_LAYERS
from textgen.hardware.kernel_choice import choose_kernel, choose_training_path
from textgen.hardware.onednn import onednn_status, padded_row
from textgen.hardware.onednn_rnn import bfloat16_refusal
from textgen.hardware.precision import cpu_flags, has_native_bfloat16

PLAIN_LAYERS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}

needs_onednn = pytest.mark.skipif(onednn_status()[0] is None, reason=f"no oneDNN here: {onednn_status()[1]}")
NATIVE_BFLOAT16 = has_native_bfloat16(cpu_flags()) and onednn_status()[0] is not None
needs_bfloat16 = pytest.mark.skipif(
    not NATIVE_BFLOAT16 or bfloat16_refusal(onednn_status()[0]) is not None,
    reason="this CPU has no native bfloat16 (AVX-512 BF16 or AMX) for oneDNN's bfloat16 kernel",
)


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
def compared_names(state_count):
    """What outputs_and_gradients returns, in its order: outputs, final states, then every gradient."""
    states = [f"state {i}" for i in range(state_count)]
    initial = [f"d initial state {i}" for i in range(state_count)]
    return ["outputs", *states, "d inputs", "d kernel", "d recurrent kernel", "d bias", *initial]


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
    weights = [
        (rng.normal(size=weight.shape) / np.sqrt(weight.shape[0] if weight.ndim == 2 else 4)).astype(np.float32)
        for weight in plain.get_weights()
    ]
    fused.set_weights(weights)
    plain.set_weights(weights)
    output_weights = rng.normal(size=(batch, time, units)).astype(np.float32)
    state_weights = [rng.normal(size=(batch, units)).astype(np.float32) for _ in range(state_count)]
    ours = outputs_and_gradients(fused, inputs, initial_state, output_weights, state_weights)
    theirs = outputs_and_gradients(plain, inputs, initial_state, output_weights, state_weights)
    names = compared_names(state_count)
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
    choose = functools.partial(choose_kernel, gpu_available=False, native_bfloat16=NATIVE_BFLOAT16)
    assert choose("keras", precision="float32") == ("keras", None)
    assert choose_kernel("auto", precision="float32", gpu_available=True, native_bfloat16=True) == ("keras", None)
    assert choose("auto", precision="mixed_float16") == ("keras", None)  # oneDNN's CPU RNN has no float16 training
    with pytest.raises(TextgenError, match="--kernel onednn trains in float32 or mixed_bfloat16, not mixed_float16"):
        choose("onednn", precision="mixed_float16")
    assert choose("auto", precision="float32")[0] == ("onednn" if available else "keras")
    assert choose("auto", precision="mixed_bfloat16")[0] == ("onednn" if NATIVE_BFLOAT16 else "keras")


@needs_onednn
def test_auto_trains_in_bfloat16_only_through_the_bfloat16_kernel():
    def path(flags, **settings):
        return choose_training_path(TrainConfig(**settings), gpu_available=False, flags=flags)[:2]

    avx2, zen4, xeon = {"avx2", "fma"}, {"avx2", "avx512f", "avx512_bf16"}, {"avx512_bf16", "amx_bf16"}
    assert path(avx2) == ("float32", "onednn")
    makes_bfloat16 = bfloat16_refusal(onednn_status()[0]) is None  # what oneDNN says of the CPU this runs on
    bfloat16 = ("mixed_bfloat16", "onednn") if makes_bfloat16 else ("float32", "onednn")  # AVX2: oneDNN refuses it
    assert path(zen4) == path(xeon) == bfloat16
    # Without the fused kernel, auto's bfloat16 would run through Keras's layers: float32 instead.
    assert path(zen4, kernel="keras") == ("float32", "keras")
    # An explicit precision is kept, whatever the kernel.
    assert path(zen4, kernel="keras", precision="mixed_bfloat16") == ("mixed_bfloat16", "keras")
    assert path(avx2, precision="mixed_bfloat16") == ("mixed_bfloat16", "keras")  # with the note of the test below
    assert choose_training_path(TrainConfig(), gpu_available=True, flags=zen4)[:2] == ("mixed_float16", "keras")


@needs_onednn
def test_without_native_bfloat16_the_bfloat16_kernel_is_refused_in_one_line():
    # By the CPU's flags, without asking oneDNN (which would emulate bfloat16 slowly on plain AVX-512).
    kernel, note = choose_kernel("auto", precision="mixed_bfloat16", gpu_available=False, native_bfloat16=False)
    assert kernel == "keras" and note == (
        "note: the oneDNN kernel cannot train in mixed_bfloat16 here (this CPU has neither AVX-512 BF16 nor AMX); "
        "training uses Keras's layers"
    )
    with pytest.raises(TextgenError, match="^--kernel onednn cannot train in mixed_bfloat16 here: this CPU has"):
        choose_kernel("onednn", precision="mixed_bfloat16", gpu_available=False, native_bfloat16=False)


@needs_onednn
def test_onednn_refuses_bfloat16_on_an_avx2_cpu_and_the_run_says_so(tmp_path):
    # oneDNN's own dispatcher limited to AVX2 (ONEDNN_MAX_CPU_ISA, read when the library loads): the CPU
    # class that has no bfloat16 at all. oneDNN refuses the primitive; the run says so in one line.
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=60))
    command = [
        sys.executable,
        "-m",
        "textgen",
        "train",
        str(corpus),
        "--precision",
        "mixed_bfloat16",
        "--kernel",
        "onednn",
        "--units",
        "8",
        "--layers",
        "1",
        "--epochs",
        "1",
    ]
    environment = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    # On a CPU that really is AVX2-only the flags answer before oneDNN is asked; on a bf16 CPU held to
    # AVX2 by ONEDNN_MAX_CPU_ISA the flags say yes and oneDNN's refusal is the reason.
    if has_native_bfloat16(cpu_flags()):
        reason = (
            "oneDNN has no bfloat16 RNN for this CPU "
            "(oneDNN bfloat16 lstm primitive_desc_create failed with status 3); it needs AVX-512 BF16 or AMX"
        )
    else:
        reason = "this CPU has neither AVX-512 BF16 nor AMX"
    assert run.stderr.strip().splitlines() == [f"Error: --kernel onednn cannot train in mixed_bfloat16 here: {reason}"]
    assert not (tmp_path / "saved_models" / "text").exists()
    probe = "from textgen.hardware.kernel_choice import choose_kernel; print(choose_kernel('auto', precision='mixed_bfloat16', gpu_available=False, native_bfloat16=True))"  # noqa: E501
    run = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True, timeout=120)
    assert run.stdout.startswith("('keras', \"note: the oneDNN kernel cannot train in mixed_bfloat16 here"), run.stderr


def relative_error(mine, expected):
    return float(np.linalg.norm(np.asarray(mine, np.float64) - expected) / max(np.linalg.norm(expected), 1e-30))


@needs_bfloat16
@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("batch, time, input_dim, units", [(1, 1, 3, 4), (5, 7, 3, 4), (8, 33, 16, 64)])
def test_the_bfloat16_kernel_is_as_close_to_float32_as_keras_own_bfloat16(cell, batch, time, input_dim, units):
    # The tolerance is bfloat16's own: 8 significant bits, so each product rounds its inputs by
    # up to 2^-9. The measure is Keras's own mixed_bfloat16 layer on the same inputs and weights:
    # the fused bfloat16 kernel may differ from exact float32 no more than 2x as much as Keras's
    # bfloat16 does (and never more than 5% of any result's norm).
    rng = np.random.default_rng(batch * 100 + time)
    state_count = 2 if cell == "lstm" else 1

    # Inputs and states already bfloat16 values: all three layers then see the very same numbers.
    def bfloat16_values(shape):
        return rng.normal(size=shape).astype(tf.bfloat16.as_numpy_dtype).astype(np.float32)

    inputs = bfloat16_values((batch, time, input_dim))
    initial_state = [bfloat16_values((batch, units)) for _ in range(state_count)]
    layers = {
        "float32": PLAIN_LAYERS[cell](units, return_sequences=True, return_state=True),
        "keras bfloat16": PLAIN_LAYERS[cell](units, return_sequences=True, return_state=True, dtype="mixed_bfloat16"),
        "fused bfloat16": FUSED_LAYERS[cell](units, return_sequences=True, return_state=True, dtype="mixed_bfloat16"),
    }
    for layer in layers.values():
        layer(inputs)
    weights = [
        (rng.normal(size=weight.shape) / np.sqrt(weight.shape[0] if weight.ndim == 2 else 4)).astype(np.float32)
        for weight in layers["float32"].get_weights()
    ]
    output_weights = rng.normal(size=(batch, time, units)).astype(np.float32)
    state_weights = [rng.normal(size=(batch, units)).astype(np.float32) for _ in range(state_count)]
    results = {}
    for name, layer in layers.items():
        layer.set_weights(weights)
        results[name] = outputs_and_gradients(layer, inputs, initial_state, output_weights, state_weights)
    names = compared_names(state_count)
    for index, name in enumerate(names):
        exact = results["float32"][index]
        ours, keras_own = (
            relative_error(results[which][index], exact) for which in ("fused bfloat16", "keras bfloat16")
        )
        assert ours <= max(2 * keras_own, 1e-3) and ours < 0.05, (name, ours, keras_own)
    # The kernels' gradients reach the float32 variables as float32; outputs stay in the compute type.
    assert results["fused bfloat16"][0].dtype == tf.bfloat16.as_numpy_dtype


@needs_bfloat16
def test_the_bfloat16_kernel_reads_the_float32_variables_uncast(monkeypatch):
    from textgen.hardware import fused_rnn

    seen = []
    forward = fused_rnn.FusedKernel.forward

    def spy(self, inputs, kernel, *rest):
        seen.append((inputs.dtype, kernel.dtype))
        return forward(self, inputs, kernel, *rest)

    monkeypatch.setattr(fused_rnn.FusedKernel, "forward", spy)
    layer = FUSED_LAYERS["lstm"](4, return_sequences=True, dtype="mixed_bfloat16")
    layer(np.ones((2, 3, 5), np.float32))
    assert seen == [(tf.bfloat16.as_numpy_dtype, np.float32)]


def test_a_missing_library_falls_back_with_one_line(monkeypatch, tmp_path):
    from textgen.hardware import onednn

    monkeypatch.setattr(onednn, "_ONEDNN", None)
    monkeypatch.setattr(onednn, "load_library", lambda: (None, "the onednn-cpu-gomp package is not installed"))
    kernel, note = choose_kernel("auto", precision="float32", gpu_available=False, native_bfloat16=False)
    assert kernel == "keras" and note.startswith("note: oneDNN's fused kernel is not available (the onednn")
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=100))
    lines = []
    result = train_small(corpus, tmp_path, echo=lines.append)
    assert result.kernel == "keras" and sum("not available" in line for line in lines) == 1


@needs_onednn
@pytest.mark.slow
@pytest.mark.parametrize(
    "precision", ["float32", pytest.param("mixed_bfloat16", marks=needs_bfloat16, id="mixed_bfloat16")]
)
def test_training_with_and_without_the_kernel_reaches_the_same_loss(tmp_path, precision):
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=600))
    settings = dict(epochs=3, units=32, layers=2, learning_rate=1e-2, seq_length=30, batch_size=16, precision=precision)
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
    # Float32 master weights under either precision: the saved model is a plain float32 model.
    assert {weight.dtype for weight in with_keras.get_weights()} == {np.dtype(np.float32)}


@needs_onednn
@pytest.mark.parametrize(
    "precision", ["float32", pytest.param("mixed_bfloat16", marks=needs_bfloat16, id="mixed_bfloat16")]
)
def test_a_stateful_fused_run_and_its_resume(tmp_path, precision):
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(lines=300))
    first = train_small(
        corpus,
        tmp_path,
        name="run",
        stateful=True,
        kernel="onednn",
        epochs=2,
        time_budget=0.5,
        checkpoint_every=3,
        precision=precision,
    )
    assert (first.kernel, first.precision) == ("onednn", precision)
    import textgen

    second = textgen.train(corpus, name="run", root=tmp_path, resume=True, epochs=2, echo=quiet)
    assert second.epochs[-1]["val_loss"] > 0 and second.epochs[-1]["run"] == 2
    assert (second.kernel, second.precision) == ("onednn", precision)  # the resumed run keeps its precision
