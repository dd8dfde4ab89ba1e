"""Keras callbacks of our own, one job each.

    PlainModel     keeps the saved (plain) model in step with the trained one; puts val_loss in the logs
    TimeBudget     stops training, mid-epoch if need be, once the budget is spent
    SignalStop     SIGINT / SIGTERM stop after the current batch; a second Ctrl-C stops at once
    WorkersAgree   workers of a cluster take the chief's learning rate, and stop together
    EpochMetrics   adds bits per character, perplexity, chars/s and the learning rate to each epoch's logs
    BestModel      writes model.keras when the epoch's loss is the best so far
    EpochLog       appends the epoch to the history, writes metrics.json, prints one line

The learning-rate schedule (schedule.py), the backup (checkpoints.py), what
TensorBoard shows (tensorboard_logs.py) and the progress lines in a log file
(progress.py) are callbacks too; EarlyStopping and TerminateOnNaN are Keras's
own. Keras calls them in list order: training/loop.py lists them.
"""

import functools
import signal
import time

import keras

from textgen.metrics import epoch_line, judged_loss, loss_metrics
from textgen.saved.saved_model import write_metrics, write_model
from textgen.training.optimizer_state import learning_rate, optimizer_step


class PlainModel(keras.callbacks.Callback):
    """Keeps the plain model (the one saved) in step with the trained one, and validates it.

    Stateful training trains a model whose batch size is fixed and whose RNN state
    runs on from one batch to the next (model.build_model, ``stateful_batch_size``).
    What textgen saves and validates is the plain model with the same weights: it
    runs at any batch size, from a zero state (stateless training trains it
    directly; so is a twin of Keras's layers for the fused ones). At each epoch
    end this copies the weights over and puts the loss on the validation windows
    in the logs as ``val_loss``; at each epoch start it clears the carried state,
    as new streams begin.
    """

    def __init__(self, plain_model, validation_data=None):
        super().__init__()
        self.plain_model = plain_model
        self.validation_data = validation_data

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self.model.layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()

    def on_epoch_end(self, epoch, logs=None):
        if self.plain_model is not self.model:  # stateful training: a twin with the same layers, same order
            self.plain_model.set_weights(self.model.get_weights())
        if self.validation_data is not None and logs is not None:
            # A stateless trained model scores the same as its plain twin, and faster where it runs the
            # fused kernel (8 batches of a 2x256 LSTM: ~1 s against ~1.8 s); a stateful one needs the twin.
            stateful = any(getattr(layer, "stateful", False) for layer in self.model.layers)
            scorer = self.plain_model if stateful else self.model
            scores = scorer.evaluate(self.validation_data, verbose=0, return_dict=True)
            logs["val_loss"] = scores["loss"]


class TimeBudget(keras.callbacks.Callback):
    """Stop training cleanly, mid-epoch if need be, once ``seconds`` have passed.

    Keras ends the epoch at the current batch, still calls ``on_epoch_end``, so
    the partial epoch is scored and can be kept as best.
    """

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.started = None
        self.expired = False

    def on_train_begin(self, logs=None):
        if self.started is None:  # a resumed run may call fit twice; the budget spans both
            self.started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is not None and time.monotonic() - self.started >= self.seconds:
            self.expired = True
            self.model.stop_training = True


class WorkersAgree(keras.callbacks.Callback):
    """Workers of a cluster agree, at every step, on the learning rate and on when to stop.

    Each worker runs every callback on its own clock. The schedule (schedule.py)
    spreads the rate over the time budget, so two workers would step with
    slightly different rates and their weights drift apart: before each step,
    all take the chief's rate (it comes after LearningRateDecay in the list).
    The time budget and Ctrl-C may end one worker alone, which would leave the
    others waiting in their next all-reduce forever: after each step, all stop
    if any wants to (it comes after TimeBudget and SignalStop). One number
    gathered from every replica each time (distribution.gather).
    """

    def __init__(self, distribution, *, clocked_rate):
        super().__init__()
        self.distribution = distribution  # hardware/strategy.Distribution
        # Without a time budget the rate follows the step count, the same on every worker: no need to agree
        # on it (a gather per step cost 23% of two loopback workers' speed). Workers agree on having one.
        self.clocked_rate = clocked_rate
        self.stopped_by_another = False  # this worker went on, but another one stopped

    def on_train_batch_begin(self, batch, logs=None):
        if not self.clocked_rate:
            return
        rates = self.distribution.gather(learning_rate(self.model))
        self.model.optimizer.learning_rate = float(rates[0])  # replica 0 is the chief's

    def on_train_batch_end(self, batch, logs=None):
        wished = self.model.stop_training
        wishes = self.distribution.gather(1.0 if wished else 0.0)  # (replicas,)
        self.model.stop_training = bool(wishes.max() > 0)
        self.stopped_by_another = self.stopped_by_another or (self.model.stop_training and not wished)


class SignalStop(keras.callbacks.Callback):
    """SIGINT (Ctrl-C) and SIGTERM end training cleanly after the current batch.

    Keras then scores the partial epoch and BestModel keeps the model if it is
    the best; a second Ctrl-C stops at once (KeyboardInterrupt).
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        super().__init__()
        self.received = None  # the name of the signal that stopped training
        self.previous = {}

    def _handle(self, number, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name
        self.model.stop_training = True

    def on_train_begin(self, logs=None):
        for name in self.SIGNALS:
            try:
                self.previous[name] = signal.signal(getattr(signal, name), self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def on_train_end(self, logs=None):
        self.restore()

    def restore(self):
        """The handlers as they were; also called when training fails (Keras skips on_train_end then)."""
        for name, handler in self.previous.items():
            signal.signal(getattr(signal, name), handler)
        self.previous = {}


class EpochMetrics(keras.callbacks.Callback):
    """Adds ``bits_per_character``, ``perplexity`` (training and validation), ``characters_per_second``
    and ``learning_rate`` to each epoch's logs, where TensorBoard and EpochLog read them.
    """

    def __init__(self, shape):
        super().__init__()
        self.shape = shape  # plan.RunShape

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = self.last_batch_time = time.monotonic()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        self.last_batch_time = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = max(self.last_batch_time - self.epoch_started, 1e-9)
        logs["characters_per_second"] = self.batches * self.shape.characters_per_batch / seconds
        logs["learning_rate"] = learning_rate(self.model)  # as the last step used it
        logs["steps"] = self.batches
        for prefix in ("", "val_"):  # train and validation alike; Keras logs val_* as validation
            if prefix + "loss" in logs:
                derived = loss_metrics(float(logs[prefix + "loss"]), self.shape.characters_per_token)
                logs.update({prefix + key: value for key, value in derived.items()})


class BestModel(keras.callbacks.Callback):
    """Writes ``plain_model`` to model.keras (atomically) after each epoch that beats the best loss so far.

    ``output`` is the run's saved.run_directory.RunDirectory: after the first
    save, an ``--overwrite`` run takes the old model's place.
    """

    def __init__(self, output, plain_model, state):
        super().__init__()
        self.output = output
        self.plain_model = plain_model
        self.state = state  # the run's RunState: best_loss, last_saved_epoch

    def on_epoch_end(self, epoch, logs=None):
        loss = judged_loss(logs or {})
        if loss < self.state.best_loss:
            self.state.best_loss = loss
            write_model(self.output.path, self.plain_model)
            self.output.model_saved()
            self.state.last_saved_epoch = epoch + 1


class EpochLog(keras.callbacks.Callback):
    """Each epoch's record: appended to the run's history, written to metrics.json, printed as one line."""

    def __init__(self, directory, state, *, echo=None):
        super().__init__()
        self.directory = directory
        self.state = state  # the run's RunState: history, run, last_saved_epoch
        self.echo = echo or functools.partial(print, flush=True)
        self.pending = None  # the last epoch's line, not printed yet

    def on_epoch_begin(self, epoch, logs=None):
        self._print_pending()

    def on_epoch_end(self, epoch, logs=None):
        record = {"run": self.state.run, "epoch": epoch + 1, "global_step": optimizer_step(self.model)}
        record.update({key: float(value) for key, value in (logs or {}).items()})
        record["steps"] = int(record.get("steps", 0))
        record["saved"] = self.state.last_saved_epoch == epoch + 1
        self.state.history.append(record)
        write_metrics(self.directory, self.state.history)
        # Printed at the next epoch's start (or training's end): Keras's progress
        # bar, which runs after this callback, has not finished its line yet.
        self.pending = epoch_line(record, while_training=True)

    def on_train_end(self, logs=None):
        self._print_pending()

    def _print_pending(self):
        if self.pending:
            self.echo(self.pending)
            self.pending = None
