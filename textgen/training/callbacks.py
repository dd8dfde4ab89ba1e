"""Keras callbacks of our own: the time budget, the learning-rate schedule, the
plain model kept in step and validated, what happens at each epoch end, text
samples for TensorBoard, a clean stop on SIGINT / SIGTERM, and resumable backups.

Everything else (TensorBoard, EarlyStopping, TerminateOnNaN) is Keras's own callback.
"""

import functools
import math
import signal
import time

import keras
import tensorflow as tf

from textgen.saved import artifacts


class TimeBudget(keras.callbacks.Callback):
    """Stop training cleanly, mid-epoch if need be, once ``seconds`` have passed.

    Keras ends the epoch at the current batch, still runs validation and calls
    ``on_epoch_end``, so the partial epoch is scored and can be kept as best.
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

    A run ends at its last step or at its time budget, whichever comes first, so
    progress is the larger of the two fractions: steps done / total steps, and
    seconds spent / budget. (Keras's LearningRateScheduler changes the rate only
    per epoch and knows nothing of the clock; with a 95-second budget there may
    be less than one epoch.) Progress never goes back: a resumed run starts from
    the progress saved in its backup and spreads what is left of the schedule over
    its own budget, so the rate continues where it stopped (trainer.py gives a run
    whose schedule was used up a new one).
    """

    def __init__(self, schedule, peak, *, total_steps, time_budget=None, progress=0.0):
        super().__init__()
        self.schedule = schedule
        self.peak = peak
        self.total_steps = total_steps
        self.time_budget = time_budget
        self.initial_progress = progress  # from the backup when resuming, else 0
        self.started = None

    def progress(self):
        done = int(self.model.optimizer.iterations) / max(self.total_steps, 1)
        progress = max(self.initial_progress, done)
        if self.time_budget is not None and self.started is not None:
            spent = (time.monotonic() - self.started) / self.time_budget
            progress = max(progress, self.initial_progress + (1.0 - self.initial_progress) * spent)
        return min(progress, 1.0)

    def on_train_begin(self, logs=None):
        if self.started is None:  # a resumed run may call fit twice; the budget spans both
            self.started = time.monotonic()

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = self.peak * schedule_factor(self.schedule, self.progress())


class PlainModel(keras.callbacks.Callback):
    """Keeps the plain model (the one saved) in step with the trained one, and validates it.

    Stateful training trains a model whose batch size is fixed and whose RNN state
    runs on from one batch to the next (model.build_model, ``stateful_batch_size``).
    What textgen saves and validates is the plain model with the same weights: it
    runs at any batch size, from a zero state (stateless training trains it directly). At each epoch end this copies the
    weights over and puts the plain model's loss on the validation windows in the
    logs as ``val_loss``, where EpochRecorder, TensorBoard and EarlyStopping read
    it; at each epoch start it clears the carried state, as new streams begin.
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
            scores = self.plain_model.evaluate(self.validation_data, verbose=0, return_dict=True)
            logs["val_loss"] = scores["loss"]


class EpochRecorder(keras.callbacks.Callback):
    """At each epoch end: derived metrics, the best model saved, metrics.json, one line printed.

    It adds ``bits_per_character``, ``perplexity`` and ``characters_per_second``
    to the epoch's logs, so the TensorBoard callback after it logs them too. What
    it saves is ``plain_model``, kept in step by PlainModel (which runs before it).
    """

    def __init__(self, directory, plain_model, *, characters_per_batch, characters_per_token,
                 echo=functools.partial(print, flush=True), history=(), best_loss=math.inf, run=1):
        super().__init__()
        self.directory = directory
        self.plain_model = plain_model
        self.characters_per_batch = characters_per_batch
        self.characters_per_token = characters_per_token
        self.echo = echo
        self.best_loss = best_loss  # a resumed run keeps the interrupted run's best and history
        self.history = list(history)
        self.run = run  # 1 for a new model, then one more for each resume
        self.pending = None  # the last epoch's summary line, not printed yet

    def on_epoch_begin(self, epoch, logs=None):
        self._print_pending()
        self.epoch_started = time.monotonic()
        self.last_batch_time = self.epoch_started
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        self.last_batch_time = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        seconds = max(self.last_batch_time - self.epoch_started, 1e-9)
        derived = {"characters_per_second": self.batches * self.characters_per_batch / seconds,
                   "learning_rate": float(self.model.optimizer.learning_rate)}  # as the last step used it
        for prefix in ("", "val_"):  # train and validation alike; Keras logs val_* as validation
            if prefix + "loss" in logs:
                loss = float(logs[prefix + "loss"])
                derived[prefix + "bits_per_character"] = loss / math.log(2) / self.characters_per_token
                derived[prefix + "perplexity"] = math.exp(min(loss, 700.0))
        logs.update(derived)  # the same dict reaches the TensorBoard callback next
        # The model is judged on held-out text when there is some, else on training text.
        loss = float(logs.get("val_loss", logs.get("loss", math.nan)))
        improved = loss < self.best_loss
        if improved:
            self.best_loss = loss
            artifacts.atomic_write(self.directory / artifacts.MODEL_FILE, self.plain_model.save)
        record = {"run": self.run, "epoch": epoch + 1, "steps": self.batches,
                  "global_step": int(self.model.optimizer.iterations)}
        record.update({key: float(value) for key, value in logs.items()})
        record["saved"] = improved
        self.history.append(record)
        artifacts.write_json(self.directory / artifacts.METRICS_FILE, self.history)
        # Printed at the next epoch's start (or training's end): Keras's progress
        # bar, which runs after this callback, has not finished its line yet.
        self.pending = self._summary(record)

    def on_train_end(self, logs=None):
        self._print_pending()

    def _print_pending(self):
        if self.pending:
            self.echo(self.pending)
            self.pending = None

    @staticmethod
    def _summary(record):
        prefix = "val_" if "val_loss" in record else ""
        held_out = f", val_loss {record['val_loss']:.4f}" if prefix else ""
        return (
            f"epoch {record['epoch']}: loss {record['loss']:.4f}{held_out} "
            f"(perplexity {record[prefix + 'perplexity']:.2f}, {record[prefix + 'bits_per_character']:.3f} bits/char), "
            f"{record['characters_per_second']:,.0f} chars/s{', saved' if record['saved'] else ''}"
        )


class TextSamples(keras.callbacks.Callback):
    """At each epoch end, text written at a few temperatures, logged as TensorBoard text.

    The samples come from the NumPy engine fed with the live model's weights, so
    a user watching TensorBoard sees the model learn to write, epoch by epoch.
    """

    def __init__(self, logs_directory, tokenizer, *, length=300, temperatures=(0.5, 1.0)):
        super().__init__()
        self.tokenizer = tokenizer
        self.length = length
        self.temperatures = temperatures
        self.writer = tf.summary.create_file_writer(str(logs_directory))

    def on_epoch_end(self, epoch, logs=None):
        from textgen.generation.numpy_engine import NumpyEngine
        from textgen.generation.generator import Generator

        generator = Generator(self.tokenizer, NumpyEngine.from_keras_model(self.model))
        with self.writer.as_default():
            for temperature in self.temperatures:
                text = generator.generate("", length=self.length, temperature=temperature, seed=epoch)
                # A fenced block keeps line breaks in TensorBoard's markdown view.
                tf.summary.text(f"samples/temperature_{temperature:g}", f"```\n{text}\n```", step=epoch)
        self.writer.flush()


class SignalStop(keras.callbacks.Callback):
    """SIGINT (Ctrl-C) and SIGTERM end training cleanly after the current batch.

    Keras then scores the partial epoch and EpochRecorder keeps the model if it
    is the best; a second Ctrl-C stops at once (KeyboardInterrupt).
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
        for name, handler in self.previous.items():
            signal.signal(getattr(signal, name), handler)


class Backup(keras.callbacks.Callback):
    """Writes a resumable backup every ``every`` steps and when training ends.

    The global step (the optimizer's iteration count) alone fixes where the
    data stream is, since every epoch has the same number of batches.
    """

    def __init__(self, directory, recorder, learning_rate, *, every=None):
        super().__init__()
        self.directory = directory
        self.recorder = recorder
        self.learning_rate = learning_rate  # the LearningRateDecay whose progress a resumed run continues
        self.every = every

    def write(self):
        state = {"global_step": int(self.model.optimizer.iterations), "best_loss": self.recorder.best_loss,
                 "history": self.recorder.history, "run": self.recorder.run,
                 "schedule_progress": self.learning_rate.progress()}
        artifacts.write_backup(self.directory, self.model.save_weights, state)

    def on_train_batch_end(self, batch, logs=None):
        finite = math.isfinite(float((logs or {}).get("loss", 0.0)))  # never back up NaN weights
        if self.every and finite and int(self.model.optimizer.iterations) % self.every == 0:
            self.write()

    def on_train_end(self, logs=None):
        last = self.recorder.history[-1]["loss"] if self.recorder.history else 0.0
        if math.isfinite(last):
            self.write()
