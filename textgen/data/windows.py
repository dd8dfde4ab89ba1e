"""The window arithmetic: how a token sequence is cut into training and validation windows.

A window is seq_length + 1 consecutive tokens: the model reads the first
seq_length and predicts the last seq_length (the same tokens shifted by one).
Training windows lie on a grid of stride seq_length that starts at a random
offset in [0, seq_length) each epoch; validation windows start at 0. Every
count of windows or steps in textgen comes from here.
"""


def training_windows(token_count, seq_length):
    """Non-overlapping training windows that fit at any grid offset in [0, seq_length)."""
    return max(0, (token_count - seq_length) // seq_length)


def steps_per_epoch(token_count, seq_length, batch_size):
    """Optimizer steps (whole batches of windows) in one pass over ``token_count`` training tokens."""
    return training_windows(token_count, seq_length) // batch_size


def validation_windows(token_count, seq_length, max_windows=None):
    """Windows from offset 0 of the validation text, at most ``max_windows``."""
    count = max(0, (token_count - 1) // seq_length)
    return count if max_windows is None else min(count, max_windows)
