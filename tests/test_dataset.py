import numpy as np
import pytest

from textgen.data.dataset import training_dataset, validation_dataset
from textgen.data.windows import training_windows
from textgen.errors import TextgenError


def test_windows_are_corpus_slices_with_targets_shifted_by_one():
    ids = np.arange(1000, dtype=np.int32)  # each id is its own position
    dataset, steps = training_dataset(ids, seq_length=10, batch_size=4, seed=3)
    assert steps == training_windows(1000, 10) // 4 == 24
    for inputs, targets in dataset.take(5):
        inputs, targets = inputs.numpy(), targets.numpy()
        assert inputs.shape == targets.shape == (4, 10) and inputs.dtype == np.int32
        assert np.array_equal(targets, inputs + 1)  # shifted by one
        assert np.array_equal(np.diff(inputs, axis=1), np.ones((4, 9)))  # contiguous text


def _epoch_starts(dataset, steps, epoch):
    batches = list(dataset.skip(epoch * steps).take(steps))
    return np.concatenate([inputs.numpy()[:, 0] for inputs, _ in batches])


def test_each_epoch_has_a_fresh_offset_and_order_and_covers_the_grid():
    ids = np.arange(10_001, dtype=np.int32)
    dataset, steps = training_dataset(ids, seq_length=100, batch_size=9, seed=0)
    epochs = [_epoch_starts(dataset, steps, epoch) for epoch in range(4)]
    offsets = {int(starts[0] % 100) for starts in epochs}
    assert len(offsets) > 1, "the window grid should move between epochs"
    for starts in epochs:
        assert len(set(starts % 100)) == 1  # one grid per epoch: windows never overlap
        assert len(set(starts)) == len(starts) == steps * 9
        assert not np.array_equal(starts, np.sort(starts))  # shuffled


def test_same_seed_same_batches():
    ids = np.arange(5000, dtype=np.int32)
    first, steps = training_dataset(ids, seq_length=20, batch_size=8, seed=11)
    second, _ = training_dataset(ids, seq_length=20, batch_size=8, seed=11)
    for (a, _), (b, _) in zip(first.take(steps + 3), second.take(steps + 3)):
        assert np.array_equal(a.numpy(), b.numpy())


def test_too_little_text_for_one_batch_fails():
    with pytest.raises(TextgenError, match="too few for one batch"):
        training_dataset(np.arange(50, dtype=np.int32), seq_length=10, batch_size=8, seed=0)


def test_validation_windows_are_in_order_from_the_start_and_capped():
    ids = np.arange(105, dtype=np.int32)
    batches = list(validation_dataset(ids, seq_length=10, batch_size=4))
    inputs = np.concatenate([x.numpy() for x, _ in batches])
    assert inputs.shape == (10, 10) and np.array_equal(inputs[:, 0], np.arange(0, 100, 10))
    capped = list(validation_dataset(ids, seq_length=10, batch_size=4, max_windows=3))
    assert sum(x.shape[0] for x, _ in capped) == 3
    with pytest.raises(TextgenError, match="fewer than one window"):
        validation_dataset(np.arange(5, dtype=np.int32), seq_length=10, batch_size=4)


def test_stateful_rows_continue_the_rows_of_the_batch_before():
    ids = np.arange(10_001, dtype=np.int32)  # each id is its own position
    dataset, steps = training_dataset(ids, seq_length=10, batch_size=8, seed=5, stateful=True)
    assert steps == training_windows(10_001, 10) // 8
    for epoch in range(3):  # every offset must fit `steps` windows in each stream
        batches = [(x.numpy(), y.numpy()) for x, y in dataset.skip(epoch * steps).take(steps)]
        assert len(batches) == steps
        for (inputs, targets), (next_inputs, _) in zip(batches, batches[1:]):
            assert np.array_equal(targets, inputs + 1)
            assert np.array_equal(next_inputs[:, 0], inputs[:, -1] + 1)  # row i goes on where it stopped
        firsts = batches[0][0][:, 0]
        assert len(set(np.diff(firsts))) == 1 and np.diff(firsts)[0] >= steps * 10  # equal streams, no overlap
        assert batches[-1][1].max() <= 10_000


def test_stateful_resume_skips_to_the_same_batches():
    ids = np.arange(3000, dtype=np.int32)
    whole, steps = training_dataset(ids, seq_length=7, batch_size=4, seed=2, stateful=True)
    resumed, _ = training_dataset(ids, seq_length=7, batch_size=4, seed=2, stateful=True, skip_batches=steps + 5)
    for (a, _), (b, _) in zip(whole.skip(steps + 5).take(10), resumed.take(10)):
        assert np.array_equal(a.numpy(), b.numpy())
