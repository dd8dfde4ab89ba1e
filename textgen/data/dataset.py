"""Token ids -> tf.data batches of (inputs, targets), the targets shifted by one.

The corpus lives once, as token ids in memory or in the token store's file
(token_file.TokenFile, read by position). A batch is a set of window start positions, and the
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

from textgen.data.token_file import TokenFile
from textgen.data.windows import steps_per_epoch, training_windows, validation_windows
from textgen.errors import TextgenError

# Batches made ahead of the model: enough to hide the (tiny) cost of a gather.
PREFETCH_BATCHES = 2


def _gather_windows(ids, starts, seq_length):
    """(batch,) start positions -> inputs and targets, each (batch, seq_length) int32.

    ``ids`` is an array, or a token store's TokenFile, which reads only the
    windows of one batch from disk.
    """
    if isinstance(ids, TokenFile):
        windows = ids.windows(starts, seq_length + 1)
    else:
        windows = np.asarray(ids[starts[:, np.newaxis] + np.arange(seq_length + 1)], dtype=np.int32)
    return windows[:, :-1], windows[:, 1:]  # (batch, seq_length + 1) split into reads and predictions


def _as_dataset_op(make_batch, seq_length):
    """Wrap ``make_batch(element) -> (inputs, targets)`` in NumPy as a tf.data map function."""

    def batch_op(element):
        inputs, targets = tf.numpy_function(make_batch, [element], (tf.int32, tf.int32), stateful=False)
        inputs.set_shape([None, seq_length])
        targets.set_shape([None, seq_length])
        return inputs, targets

    return batch_op


class _EpochLayout:
    """The window start positions of any batch of the endless training stream.

    Batch ``number`` is step ``number % steps`` of epoch ``number // steps``.
    Each epoch draws its grid offset and its order from (seed, epoch) alone, so
    any batch can be made without replaying the ones before it (resume starts
    at its batch at once). Shuffled, an epoch holds one permutation of window
    numbers, int32 while they fit: 4 bytes per window, 80 MB for a 1 GB corpus
    of 50-token windows, made once per epoch and never copied.
    """

    def __init__(self, *, token_count, seq_length, batch_size, steps, seed, stateful):
        self.token_count, self.seq_length, self.batch_size = token_count, seq_length, batch_size
        self.steps, self.seed, self.stateful = steps, seed, stateful
        self._epoch = None

    def _start_epoch(self, epoch):
        random = np.random.default_rng([self.seed, epoch])
        self._offset = int(random.integers(self.seq_length))
        if self.stateful:
            # batch_size streams of stream_length tokens; each holds at least
            # `steps` windows, whatever the offset: floor((n - 1 - offset) / batch / seq) >= steps.
            self._stream_length = (self.token_count - 1 - self._offset) // self.batch_size
        else:
            windows = training_windows(self.token_count, self.seq_length)
            self._order = np.arange(windows, dtype=np.int32 if windows < 2**31 else np.int64)
            random.shuffle(self._order)  # in place: no second copy
        self._epoch = epoch

    def starts(self, number):
        """(batch,) int64 start positions of batch ``number``."""
        epoch, step = divmod(int(number), self.steps)
        if epoch != self._epoch:
            self._start_epoch(epoch)
        if self.stateful:  # row i continues row i of the batch before
            streams = np.arange(self.batch_size, dtype=np.int64) * self._stream_length
            return self._offset + streams + step * self.seq_length
        window_numbers = self._order[step * self.batch_size : (step + 1) * self.batch_size]  # the rest wait
        return self._offset + window_numbers.astype(np.int64) * self.seq_length


def training_dataset(ids, *, seq_length, batch_size, seed, skip_batches=0, stateful=False, replicas=None):
    """An endless dataset of (inputs, targets) batches; one epoch is ``steps_per_epoch`` batches.

    ``skip_batches`` starts the stream that many batches in: a resumed run sees
    exactly the batches the interrupted one would have seen next. ``stateful``
    lays the windows out as consecutive streams (see the module docstring).

    ``replicas``: (first, local, total) when training on several devices
    (tf.distribute, hardware/strategy.py): this worker's replicas are
    numbers first .. first + local - 1 of ``total``. Each global batch of
    ``batch_size`` windows (the same ones one device would train on) is cut into
    ``total`` row blocks, and this dataset yields the blocks of its replicas, one
    after another, batch after batch: every window is trained once, on one replica.

    Returns:
        (dataset, steps_per_epoch). Pass both to ``model.fit``.
    """
    steps = steps_per_epoch(len(ids), seq_length, batch_size)
    if steps < 1:
        raise TextgenError(
            f"the training text has {len(ids)} tokens, too few for one batch of {batch_size} windows of "
            f"{seq_length + 1} tokens; lower --seq-length or --batch-size, or add text"
        )
    layout = _EpochLayout(
        token_count=len(ids), seq_length=seq_length, batch_size=batch_size, steps=steps, seed=seed, stateful=stateful
    )
    first, local, total = replicas or (0, 1, 1)
    rows = batch_size // total  # per replica

    def make_batch(element):
        number, replica = skip_batches + int(element) // local, first + int(element) % local
        starts = layout.starts(number)[replica * rows : (replica + 1) * rows]
        return _gather_windows(ids, starts, seq_length)

    dataset = (
        tf.data.Dataset.range(np.iinfo(np.int64).max)  # this worker's blocks, from the run's first batch on
        .map(_as_dataset_op(make_batch, seq_length))
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

    def make_batch(window_numbers):
        return _gather_windows(ids, window_numbers * seq_length, seq_length)

    # Window numbers batched by a batch op, so tf.distribute can split each batch across replicas.
    return (
        tf.data.Dataset.range(count)
        .batch(batch_size)  # the last batch may be short
        .map(_as_dataset_op(make_batch, seq_length))
        .prefetch(PREFETCH_BATCHES)
        .with_options(_fixed_options())
    )
