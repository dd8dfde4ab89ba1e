"""Checkpoints and resume: what a run's backup holds, when it is written, and how a run continues.

A backup is the run's ``RunState`` plus its weights and optimizer state
(saved/backup.py writes the pair atomically). The global step alone fixes
where the data stream is, since every epoch has the same number of batches:
a resumed run loads the weights, skips that many batches of the same seeded
stream (``fit_segments``) and continues the learning-rate schedule from the
saved progress.
"""

import dataclasses
import math

import keras

from textgen.errors import TextgenError
from textgen.saved.atomic import remove_temporary_files
from textgen.saved.backup import BackupRecord, read_backup, write_backup
from textgen.saved.saved_model import weights_file_bytes
from textgen.training.optimizer_state import optimizer_step


@dataclasses.dataclass
class RunState:
    """Where a run stands: what a backup saves (saved/backup.BackupRecord) and a resumed run starts from.

    The callbacks share this one object: EpochLog appends to ``history``,
    BestModel lowers ``best_loss``, LearningRateDecay moves
    ``schedule_progress``, and Backup writes it all down.
    """

    global_step: int = 0  # where this process's run starts; the live count is the optimizer's
    best_loss: float = math.inf
    history: list = dataclasses.field(default_factory=list)  # one record per epoch, of every run
    run: int = 1  # 1 for a new model, one more for each resume
    schedule_progress: float = 0.0  # 0 = the schedule's start, 1 = its end
    last_saved_epoch: int = None  # the epoch whose model BestModel saved last (not backed up)

    @classmethod
    def from_backup(cls, record):
        # A run that finished its schedule (its budget or its steps ran out) and is
        # resumed for more training gets a whole new one, not a learning rate of zero.
        progress = record.schedule_progress if record.schedule_progress < 1.0 else 0.0
        return cls(record.global_step, record.best_loss, list(record.history), record.run + 1, progress)

    def to_backup(self, global_step):
        return BackupRecord(global_step, self.best_loss, self.history, self.run, self.schedule_progress)


def restore(directory, model):
    """Load the directory's backup into ``model`` (weights and optimizer state); its ``RunState``."""
    remove_temporary_files(directory)  # a killed run may have left some
    record = read_backup(directory)
    model.optimizer.build(model.trainable_variables)  # so the optimizer's state loads too
    try:  # checked as safe to read before the run started (training/run.py); it may still not fit
        model.load_weights(directory / record.weights)
    except (ValueError, KeyError, OSError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise TextgenError(f"{directory / record.weights} does not fit this model ({first_line})") from None
    return RunState.from_backup(record)


def fit_segments(global_step, shape):
    """The ``model.fit`` calls that continue a run from ``global_step`` (``shape``: a plan.RunShape).

    Returns (initial_epoch, end_epoch, steps_per_epoch, batches_to_skip) tuples:
    first the rest of a partly trained epoch, if any, then whole epochs.
    """
    steps_per_epoch, epochs = shape.steps_per_epoch, shape.epochs
    epoch, within = divmod(global_step, steps_per_epoch)
    segments = []
    if within:
        segments.append((epoch, epoch + 1, steps_per_epoch - within, global_step))
        epoch += 1
    if epoch < epochs:
        segments.append((epoch, epochs, steps_per_epoch, epoch * steps_per_epoch))
    return segments


class Backup(keras.callbacks.Callback):
    """Writes the resumable backup every ``every`` steps and when training ends; never NaN weights.

    It goes last among the callbacks: it saves the ``RunState`` the others have updated.
    """

    def __init__(self, directory, state, *, every=None):
        super().__init__()
        self.directory = directory
        self.state = state
        self.every = every

    def write(self):
        global_step = optimizer_step(self.model)
        record = self.state.to_backup(global_step)
        write_backup(self.directory, self.model.save_weights, record, expected_bytes=weights_file_bytes(self.model))

    def on_train_batch_end(self, batch, logs=None):
        finite = math.isfinite(float((logs or {}).get("loss", 0.0)))
        if self.every and finite and optimizer_step(self.model) % self.every == 0:
            self.write()

    def on_train_end(self, logs=None):
        last = self.state.history[-1]["loss"] if self.state.history else 0.0
        if math.isfinite(last):
            self.write()
