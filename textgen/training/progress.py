"""A line of progress every half minute when no one watches a terminal (``nohup``, a cluster job, a log file).

On a terminal Keras's live bar shows each step; written to a file that bar is
noise, and textgen's line per epoch alone can leave a log silent for hours on a
large corpus. ``ProgressLog`` prints, every ``EVERY_SECONDS``:

    step 1,240/9,360 (epoch 1/6): loss 1.8412, 18,950 chars/s, 7m8s left
"""

import functools
import time

import keras

from textgen.training.optimizer_state import optimizer_step

# Seconds between two lines (read when a run starts, so a test can shorten it).
EVERY_SECONDS = 30.0


def format_duration(seconds):
    """3725 -> '1h2m5s'; 48 -> '48s'."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


class ProgressLog(keras.callbacks.Callback):
    """Every ``EVERY_SECONDS``: global step out of the total, epoch, loss, chars/s and the time left.

    The time left is the budget's rest for a ``--time-budget`` run, else the steps
    left at the speed since the last line.
    """

    def __init__(self, shape, *, time_budget=None, echo=None):
        super().__init__()
        self.shape = shape  # plan.RunShape
        self.time_budget = time_budget
        self.echo = echo or functools.partial(print, flush=True)
        self.every_seconds = EVERY_SECONDS
        self.started = None

    def on_train_begin(self, logs=None):
        now = time.monotonic()
        if self.started is None:  # a resumed run may call fit twice; one clock for the run
            self.started = now
        self.last_time, self.last_step = now, optimizer_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self.last_time < self.every_seconds:
            return
        step = optimizer_step(self.model)
        steps_per_second = (step - self.last_step) / (now - self.last_time)
        self.last_time, self.last_step = now, step
        self.echo(self.line(step, float((logs or {}).get("loss", float("nan"))), steps_per_second, now))

    def line(self, step, loss, steps_per_second, now):
        shape, total = self.shape, self.shape.total_steps
        epoch = min(step // shape.steps_per_epoch + 1, shape.epochs)
        if self.time_budget is not None:
            left = self.time_budget - (now - self.started)
        else:
            left = (total - step) / steps_per_second if steps_per_second > 0 else float("inf")
        left_text = format_duration(left) if left != float("inf") else "?"
        return (
            f"step {step:,}/{total:,} (epoch {epoch}/{shape.epochs}): loss {loss:.4f}, "
            f"{steps_per_second * shape.characters_per_batch:,.0f} chars/s, {left_text} left"
        )
