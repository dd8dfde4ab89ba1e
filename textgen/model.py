"""The network: Embedding -> N stacked recurrent layers -> Dense logits.

Built from Keras's own layers with the Functional API (no Lambda, no custom
objects), so a saved model is a plain Keras model any Keras 3 can read, and
its weights keep the standard LSTM / GRU / SimpleRNN layout that the NumPy
engine (generation/numpy_engine.py, with the equations of cells.py) reads back.

The recurrent layers keep Keras's defaults that make the fused cuDNN kernel
eligible on a GPU: tanh / sigmoid activations, no recurrent dropout,
``unroll=False``, ``use_bias=True`` and, for GRU, ``reset_after=True``.
Dropout, when asked for, goes between layers instead.
"""

import keras

from textgen.cells import CELLS


def build_model(config, vocabulary_size, *, precision="float32", stateful_batch_size=None, layer_class=None):
    """A Keras model from token ids (batch, time) to float32 logits (batch, time, vocabulary_size).

    Args:
        config: a ``ModelConfig``.
        vocabulary_size: number of distinct tokens (from the tokenizer).
        precision: a Keras dtype policy name: float32, mixed_float16 or mixed_bfloat16.
        stateful_batch_size: for stateful training, the fixed batch size: each
            recurrent layer then starts a batch from the state the previous batch
            ended in (until ``reset_state()``). None builds the plain model, the
            one that is saved: any batch size, every call starts from zeros.
        layer_class: the recurrent layer class (default: Keras's, by the cell
            registry); training passes the fused ones (hardware/fused_rnn.py).
    """
    # (batch, time); a stateful model needs its batch size to size the stored state.
    tokens = keras.Input(shape=(None,), batch_size=stateful_batch_size, dtype="int32", name="tokens")
    hidden = keras.layers.Embedding(vocabulary_size, config.embedding_dim, dtype=precision, name="embedding")(
        tokens
    )  # (batch, time, embedding_dim)
    layer_class = layer_class or getattr(keras.layers, CELLS[config.cell].keras_layer)  # lstm -> keras.layers.LSTM
    for index in range(config.layers):
        hidden = layer_class(
            config.units,
            return_sequences=True,
            stateful=stateful_batch_size is not None,
            dtype=precision,
            name=f"{config.cell}_{index + 1}",
        )(hidden)  # (batch, time, units)
        if config.dropout > 0:
            hidden = keras.layers.Dropout(config.dropout, name=f"dropout_{index + 1}")(hidden)
    # Logits stay float32 under any mixed-precision policy: a softmax over a
    # large vocabulary in float16 / bfloat16 loses the small probabilities.
    logits = keras.layers.Dense(vocabulary_size, dtype="float32", name="logits")(hidden)  # (batch, time, vocab)
    return keras.Model(tokens, logits, name=f"textgen_{config.cell}")


def compile_for_training(model, *, learning_rate, clip_norm, precision):
    """Adam with gradient clipping and cross-entropy on the logits (loss scaling under float16).

    Pure Keras, so benchmarks/gpu_throughput.py trains the very same model on the
    JAX or PyTorch backend.
    """
    # Clipping the gradient norm tames the exploding gradients of long BPTT. The
    # norm of all gradients together (global_clipnorm, PyTorch's clip_grad_norm_),
    # not each variable's own (clipnorm): that would shrink some directions and
    # not others. benchmarks/RESULTS.md: 1.552 vs 1.572 nats/char at 95 s.
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate, global_clipnorm=clip_norm)
    if precision == "mixed_float16":
        # float16's narrow range underflows small gradients; scale the loss up.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
