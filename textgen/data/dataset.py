"""Token ids -> tf.data batches of (inputs, targets), the targets shifted by one.

The corpus lives once, as token ids in memory or memory-mapped from the token
store (token_store.py). A batch is a set of window start positions, and the
windows are gathered only when the batch is made: no one-hot tensors, no copy
of the corpus per window, no copy of the corpus in the graph.

Each epoch starts the window grid at a fresh random offset in [0, seq_length),
so the model does not see text cut at the same places every epoch. Then either

    shuffled   the windows come in random order, each one on its own, or
    stateful   the text is cut into batch_size streams, one per batch row, and
               row i of each batch is the window that follows row i of the batch
               before, so the RNN state can be carried from batch to batch:

               stream 0: |w0 |w1 |w2 |...     batch 0 = (w0 of every stream)
               stream 1: |w0 |w1 |w2 |...     batch 1 = (w1 of every stream) ...

Everything derives from one seed, so a run is reproducible.
"""

import numpy as np
import tensorflow as tf

from textgen.data.windows import steps_per_epoch, training_windows, validation_windows
from textgen.errors import TextgenError

# Batches made ahead of the model: enough to hide the (tiny) cost of a gather.
PREFETCH_BATCHES = 2


def _window_gatherer(ids, seq_length):
    """A map function: (batch,) start positions -> inputs and targets, each (batch, seq_length).

    The windows are gathered in NumPy from ``ids`` as it is, a memory-mapped
    token store included: only the windows of a batch are ever read into memory.
    """
    offsets = np.arange(seq_length + 1)

    def gather(starts):
        windows = np.asarray(ids[starts[:, np.newaxis] + offsets], dtype=np.int32)  # (batch, seq_length + 1)
        return windows[:, :-1], windows[:, 1:]

    def gather_op(starts):
        inputs, targets = tf.numpy_function(gather, [starts], (tf.int32, tf.int32), stateful=False)
        inputs.set_shape([None, seq_length])
        targets.set_shape([None, seq_length])
        return inputs, targets

    return gather_op


def _epoch_batches(random_value, *, token_count, seq_length, batch_size, steps, seed, stateful):
    """One epoch's window start positions, (steps, batch): a fresh grid offset, then shuffled or as streams."""
    offset = random_value % seq_length
    if stateful:
        # batch_size streams of stream_length tokens; each holds at least
        # `steps` windows, whatever the offset: floor((n - 1 - offset) / batch / seq) >= steps.
        stream_length = (token_count - 1 - offset) // batch_size
        stream_starts = offset + stream_length * tf.range(batch_size, dtype=tf.int64)  # (batch,)
        window_offsets = seq_length * tf.range(steps, dtype=tf.int64)  # (steps,)
        return window_offsets[:, tf.newaxis] + stream_starts[tf.newaxis, :]  # (steps, batch)
    starts = offset + seq_length * tf.range(training_windows(token_count, seq_length), dtype=tf.int64)  # (windows,)
    order_seed = tf.stack([random_value, tf.constant(seed, tf.int64)])
    shuffled = tf.random.experimental.stateless_shuffle(starts, seed=order_seed)
    return tf.reshape(shuffled[: steps * batch_size], (steps, batch_size))  # windows past the last batch wait


def training_dataset(ids, *, seq_length, batch_size, seed, skip_batches=0, stateful=False):
    """An endless dataset of (inputs, targets) batches; one epoch is ``steps_per_epoch`` batches.

    ``skip_batches`` starts the stream that many batches in: a resumed run sees
    exactly the batches the interrupted one would have seen next. ``stateful``
    lays the windows out as consecutive streams (see the module docstring).

    Returns:
        (dataset, steps_per_epoch). Pass both to ``model.fit``.
    """
    steps = steps_per_epoch(len(ids), seq_length, batch_size)
    if steps < 1:
        raise TextgenError(
            f"the training text has {len(ids)} tokens, too few for one batch of {batch_size} windows of "
            f"{seq_length + 1} tokens; lower --seq-length or --batch-size, or add text"
        )
    layout = dict(
        token_count=len(ids), seq_length=seq_length, batch_size=batch_size, steps=steps, seed=seed, stateful=stateful
    )
    dataset = (
        tf.data.Dataset.random(seed=seed)  # each element starts one epoch: its own offset and order
        .flat_map(lambda random_value: tf.data.Dataset.from_tensor_slices(_epoch_batches(random_value, **layout)))
        .skip(skip_batches)  # before the gather: skipping costs no window copies
        .map(_window_gatherer(ids, seq_length))
        .prefetch(PREFETCH_BATCHES)
    )
    return dataset.with_options(_fixed_options()), steps


def _fixed_options():
    # Autotuning buys nothing here (the pipeline alone runs ~1000x faster than
    # training), and its background thread made the process hang for up to a
    # minute at exit while the iterator waited for it to wake.
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def validation_dataset(ids, *, seq_length, batch_size, max_windows=None):
    """Consecutive windows from the start of the validation text, in order (no randomness).

    ``max_windows`` caps how much of a large validation split is scored at each
    epoch end, so a 30 MB corpus does not spend minutes validating.
    """
    count = validation_windows(len(ids), seq_length, max_windows)
    if count < 1:
        raise TextgenError(
            f"the validation text has {len(ids)} tokens, fewer than one window of {seq_length + 1}; "
            f"raise --validation-fraction or lower --seq-length"
        )
    starts = tf.range(count, dtype=tf.int64) * seq_length
    return (
        tf.data.Dataset.from_tensor_slices(starts)
        .batch(batch_size)
        .map(_window_gatherer(ids, seq_length))
        .prefetch(PREFETCH_BATCHES)
        .with_options(_fixed_options())
    )
