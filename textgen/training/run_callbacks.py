"""The callbacks of one run, ours and Keras's, in the order Keras must call them.

Each has one job (training/callbacks.py lists ours); this module only puts
them together for a run and hands back the two that the end of a run asks
about: the time budget and the signal handler.
"""

import dataclasses

import keras

from textgen.data.dataset import validation_dataset
from textgen.safe_files import check_directory_within
from textgen.saved.layout import LOGS_DIRECTORY, SAMPLES_LOGS
from textgen.training.callbacks import (
    BestModel,
    EpochLog,
    EpochMetrics,
    PlainModel,
    SignalStop,
    TimeBudget,
    WorkersAgree,
)
from textgen.training.checkpoints import Backup
from textgen.training.progress import ProgressLog
from textgen.training.schedule import LearningRateDecay
from textgen.training.tensorboard_logs import StepScalars, TextSamples

# Validation at each epoch end scores at most this many windows of the held-out
# tail (25,600 tokens at the default window: ~0.5 s here, where 2,048 windows
# took ~2 s of every epoch's training time); ``textgen evaluate`` scores all of it.
MAX_VALIDATION_WINDOWS = 512


@dataclasses.dataclass(frozen=True)
class RunCallbacks:
    """The run's callbacks in Keras's calling order, and the two whose state the end of the run reports."""

    callbacks: list
    budget: TimeBudget
    interruption: SignalStop

    @property
    def stopped_by_another(self):
        """A worker of a cluster that stopped because another one did."""
        return any(getattr(callback, "stopped_by_another", False) for callback in self.callbacks)

    def close(self):
        """Signal handlers back as they were and event files closed, however the run ended."""
        self.interruption.restore()  # also when training fails: Keras then skips on_train_end
        for callback in self.callbacks:
            if hasattr(callback, "close"):
                callback.close()  # TensorBoard's event files


def validation_data(plan):
    """The held-out windows scored at each epoch's end, or None when the text has no held-out part."""
    if not len(plan.text.validation_ids):
        return None
    train = plan.train
    return validation_dataset(
        plan.text.validation_ids,
        seq_length=train.seq_length,
        batch_size=train.batch_size,
        max_windows=MAX_VALIDATION_WINDOWS,
    )


def run_callbacks(plan, shape, *, output, plain_model, state, distribution, progress_bar, echo):
    """The ``RunCallbacks`` of ``plan`` (``shape``: its plan.RunShape; ``state``: the shared RunState)."""
    directory, train = output.path, plan.train
    logs, held_out = directory / LOGS_DIRECTORY, validation_data(plan)
    for events in ("train", "validation", SAMPLES_LOGS):  # TensorBoard writes there: inside the model directory
        check_directory_within(logs / events, directory)
    budget, interruption = TimeBudget(train.time_budget), SignalStop()
    clocked_rate = train.time_budget is not None
    agreement = [WorkersAgree(distribution, clocked_rate=clocked_rate)] if distribution.kind == "multi-worker" else []
    schedule = LearningRateDecay(
        train.lr_schedule,
        train.learning_rate,
        state=state,
        total_steps=shape.total_steps,
        time_budget=train.time_budget,
    )
    callbacks = [
        budget,
        interruption,
        PlainModel(plain_model, held_out),  # puts val_loss in the logs, for everything below
        schedule,
        *agreement,  # after the rate is set and the stop wished for, before anything acts on them
        EpochMetrics(shape),
        BestModel(output, plain_model, state),
        EpochLog(directory, state, echo=echo),
        StepScalars(logs, shape),
        TextSamples(logs / SAMPLES_LOGS, plan.text.tokenizer),
        keras.callbacks.TerminateOnNaN(),
        Backup(directory, state, every=train.checkpoint_every),  # last: it saves what the others updated
    ]
    if not progress_bar:  # off a terminal (a log file): a line every half minute instead of the live bar
        callbacks.append(ProgressLog(shape, time_budget=train.time_budget, echo=echo))
    if train.patience is not None:
        monitored = "val_loss" if held_out is not None else "loss"
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitored, patience=train.patience))
    return RunCallbacks(callbacks, budget, interruption)
