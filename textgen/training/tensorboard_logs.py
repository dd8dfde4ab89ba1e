"""What TensorBoard shows while a run learns: curves at the global step, and text the model writes.

    logs/train/       loss, bits_per_character, learning_rate, characters_per_second:
                      a point every SCALAR_STEPS steps, at least SCALAR_SECONDS apart
    logs/validation/  loss, bits_per_character, perplexity: at each epoch's end and when the run stops
    logs/samples/     text at a few temperatures: every few minutes, at each epoch's end and at the end

Every point sits at the optimizer's global step, so a two-minute run inside
one epoch still draws a curve of dozens of points, and a resumed run carries
its curves on where they stopped instead of starting again at 0. (Keras's own
TensorBoard callback logs once per epoch, at the epoch's number.)
"""

import math
import time

import keras
import tensorflow as tf

from textgen.metrics import judged_loss, loss_metrics
from textgen.training.optimizer_state import learning_rate, optimizer_step

# How often: a training point every SCALAR_STEPS steps and SCALAR_SECONDS apart (whichever is
# sparser: dozens of points in two minutes, never thousands in an hour); text samples every
# SAMPLE_SECONDS. Read when a run starts, so a test can change them.
SCALAR_STEPS = 10
SCALAR_SECONDS = 2.0
SAMPLE_SECONDS = 180.0


class StepScalars(keras.callbacks.Callback):
    """Training scalars every SCALAR_STEPS steps (and SCALAR_SECONDS apart), validation at epoch ends."""

    def __init__(self, logs_directory, shape):
        super().__init__()
        self.logs_directory = logs_directory
        self.shape = shape  # plan.RunShape: characters per token and per batch
        self.every_steps, self.every_seconds = SCALAR_STEPS, SCALAR_SECONDS
        self.writers = None

    def on_train_begin(self, logs=None):
        if self.writers is None:
            self.writers = {
                name: tf.summary.create_file_writer(str(self.logs_directory / name)) for name in ("train", "validation")
            }
        self._start_interval()

    def _start_interval(self):
        self.loss_sum, self.batches, self.interval_started = 0.0, 0, time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.running_mean, self.seen = 0.0, 0  # Keras's "loss" is the mean over the epoch so far

    def on_train_batch_end(self, batch, logs=None):
        mean = float((logs or {}).get("loss", math.nan))
        self.seen += 1
        # This batch's own loss, out of the running mean: k * mean_k - (k - 1) * mean_(k-1).
        self.loss_sum += self.seen * mean - (self.seen - 1) * self.running_mean
        self.running_mean = mean
        self.batches += 1
        if self.batches >= self.every_steps and time.monotonic() - self.interval_started >= self.every_seconds:
            self._write_training_point()

    def _write_training_point(self):
        if not self.batches:
            return
        seconds = max(time.monotonic() - self.interval_started, 1e-9)
        loss = self.loss_sum / self.batches
        step = optimizer_step(self.model)
        with self.writers["train"].as_default():
            tf.summary.scalar("loss", loss, step=step)
            tf.summary.scalar(
                "bits_per_character",
                loss_metrics(loss, self.shape.characters_per_token)["bits_per_character"],
                step=step,
            )
            tf.summary.scalar("learning_rate", learning_rate(self.model), step=step)
            tf.summary.scalar(
                "characters_per_second", self.batches * self.shape.characters_per_batch / seconds, step=step
            )
        self._start_interval()

    def on_epoch_end(self, epoch, logs=None):
        self._write_training_point()  # the epoch's last steps, so the curve ends where validation is
        if logs and "val_loss" in logs:
            step = optimizer_step(self.model)
            loss = float(logs["val_loss"])
            with self.writers["validation"].as_default():
                tf.summary.scalar("loss", loss, step=step)
                for name, value in loss_metrics(loss, self.shape.characters_per_token).items():
                    tf.summary.scalar(name, value, step=step)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.flush()

    def close(self):
        """Close the event files (training/loop.py calls this however the run ends)."""
        for writer in (self.writers or {}).values():
            writer.close()


def _shown(text):
    """A sample as TensorBoard's text view shows it: in a fenced block, so whitespace and code survive."""
    if not text.strip():  # an empty box would look like a bug: say what is there
        return f"(only whitespace: {text.count(chr(10))} line breaks, {len(text) - text.count(chr(10))} other)"
    return f"```\n{text}\n```"


class TextSamples(keras.callbacks.Callback):
    """Text written at a few temperatures, logged as TensorBoard text at the global step.

    Every SAMPLE_SECONDS of training (a run inside one long epoch still shows
    its text improving), at each epoch's end and when the run stops. The samples
    come from the NumPy engine fed with the live model's weights.
    """

    def __init__(self, logs_directory, tokenizer, *, length=300, temperatures=(0.5, 1.0)):
        super().__init__()
        self.tokenizer = tokenizer
        self.length = length
        self.temperatures = temperatures
        self.every_seconds = SAMPLE_SECONDS
        self.writer = tf.summary.create_file_writer(str(logs_directory))
        self.last_written = None

    def on_train_begin(self, logs=None):
        self.last_written = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.last_written >= self.every_seconds:
            if math.isfinite(float((logs or {}).get("loss", math.nan))):
                self.write()

    def on_epoch_end(self, epoch, logs=None):
        if math.isfinite(judged_loss(logs or {})):  # NaN weights write nothing worth reading
            self.write()

    def write(self):
        from textgen.generation.generator import Generator
        from textgen.generation.numpy_engine import NumpyEngine
        from textgen.saved.keras_archive import Network

        step = optimizer_step(self.model)
        generator = Generator(self.tokenizer, NumpyEngine(Network.from_keras_model(self.model)))
        with self.writer.as_default():
            for temperature in self.temperatures:
                text = generator.generate("", length=self.length, temperature=temperature, seed=step)
                tf.summary.text(f"samples/temperature_{temperature:g}", _shown(text), step=step)
        self.writer.flush()
        self.last_written = time.monotonic()

    def close(self):
        self.writer.close()
