"""The network: Embedding -> N stacked recurrent layers -> Dense logits.

Built from Keras's own layers with the Functional API (no Lambda, no custom
objects), so a saved model is a plain Keras model any Keras 3 can read, and
its weights keep the standard LSTM / GRU / SimpleRNN layout that the NumPy
engine (engine_numpy.py) reads back.

The recurrent layers keep Keras's defaults that make the fused cuDNN kernel
eligible on a GPU: tanh / sigmoid activations, no recurrent dropout,
``unroll=False``, ``use_bias=True`` and, for GRU, ``reset_after=True``.
Dropout, when asked for, goes between layers instead.
"""

import keras

# The cell names users type -> Keras layer classes.
RECURRENT_LAYERS = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def build_model(config, vocabulary_size, *, precision="float32"):
    """A Keras model from token ids (batch, time) to float32 logits (batch, time, vocabulary_size).

    Args:
        config: a ``ModelConfig``.
        vocabulary_size: number of distinct tokens (from the tokenizer).
        precision: a Keras dtype policy name: float32, mixed_float16 or mixed_bfloat16.
    """
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")  # (batch, time)
    hidden = keras.layers.Embedding(vocabulary_size, config.embedding_dim, dtype=precision, name="embedding")(
        tokens
    )  # (batch, time, embedding_dim)
    layer_class = RECURRENT_LAYERS[config.cell]
    for index in range(config.num_layers):
        hidden = layer_class(
            config.units, return_sequences=True, dtype=precision, name=f"{config.cell}_{index + 1}"
        )(hidden)  # (batch, time, units)
        if config.dropout_rate > 0:
            hidden = keras.layers.Dropout(config.dropout_rate, name=f"dropout_{index + 1}")(hidden)
    # Logits stay float32 under any mixed-precision policy: a softmax over a
    # large vocabulary in float16 / bfloat16 loses the small probabilities.
    logits = keras.layers.Dense(vocabulary_size, dtype="float32", name="logits")(hidden)  # (batch, time, vocab)
    return keras.Model(tokens, logits, name=f"textgen_{config.cell}")


def compile_for_training(model, *, learning_rate, clip_norm, precision):
    """Adam with gradient clipping and cross-entropy on the logits (loss scaling under float16).

    Pure Keras, so benchmarks/gpu_throughput.py trains the very same model on the
    JAX or PyTorch backend.
    """
    # Clipping the gradient norm tames the exploding gradients of long BPTT.
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clip_norm)
    if precision == "mixed_float16":
        # float16's narrow range underflows small gradients; scale the loss up.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
