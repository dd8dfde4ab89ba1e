"""The learning-rate schedule: the peak rate, and how it falls to zero by the end of the run.

    constant   the peak all the way
    cooldown   the peak, then linearly to zero over the last COOLDOWN_FRACTION (the default)
    linear     linearly from the peak to zero
    cosine     half a cosine from the peak to zero

A run ends at its last step or at its time budget, whichever comes first, so
its progress is the larger of the two fractions (benchmarks/RESULTS.md chose
the default: 1.4549 vs 1.4945 nats/char for constant at 10 minutes).
"""

import math
import time

import keras

from textgen.training.optimizer_state import optimizer_step

# The "cooldown" schedule holds the peak rate and decays over this last part of the run.
COOLDOWN_FRACTION = 0.2


def schedule_factor(schedule, progress):
    """The fraction of the peak learning rate at ``progress`` (0 = start, 1 = end of the run)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cooldown":  # constant, then linear to zero over the last COOLDOWN_FRACTION
        return min(1.0, (1.0 - progress) / COOLDOWN_FRACTION)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0  # constant


class LearningRateDecay(keras.callbacks.Callback):
    """Sets the learning rate before each step from how far the run has come.

    Progress is the larger of steps done / total steps and seconds spent /
    budget. (Keras's LearningRateScheduler changes the rate only per epoch and
    knows nothing of the clock; with a 95-second budget there may be less than
    one epoch.) Progress never goes back: a resumed run starts from the
    progress its backup saved and spreads what is left of the schedule over its
    own budget, so the rate continues where it stopped. The progress is kept
    in the run's ``RunState`` (training/checkpoints.py), which the backup saves.
    """

    def __init__(self, schedule, peak, *, total_steps, state, time_budget=None):
        super().__init__()
        self.schedule = schedule
        self.peak = peak
        self.total_steps = total_steps
        self.time_budget = time_budget
        self.state = state
        self.initial_progress = state.schedule_progress  # from the backup when resuming, else 0
        self.started = None

    def progress(self):
        done = optimizer_step(self.model) / max(self.total_steps, 1)
        progress = max(self.initial_progress, done)
        if self.time_budget is not None and self.started is not None:
            spent = (time.monotonic() - self.started) / self.time_budget
            progress = max(progress, self.initial_progress + (1.0 - self.initial_progress) * spent)
        return min(progress, 1.0)

    def on_train_begin(self, logs=None):
        if self.started is None:  # a resumed run may call fit twice; the budget spans both
            self.started = time.monotonic()

    def on_train_batch_begin(self, batch, logs=None):
        self.state.schedule_progress = self.progress()
        self.model.optimizer.learning_rate = self.peak * schedule_factor(self.schedule, self.state.schedule_progress)

    def on_train_end(self, logs=None):
        self.state.schedule_progress = self.progress()  # for the backup written next
