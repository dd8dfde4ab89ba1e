"""Training: precision and seeds, compile, callbacks, ``model.fit``, save.

The text arrives prepared and checked (training_text.py); this module owns the
TensorFlow side. The best model by validation loss is written atomically to
``model.keras`` at each epoch end where it improves, so a run stopped by its
time budget, by NaN, or killed, leaves the best model it reached.
"""

import dataclasses
import functools
import math
import platform

import keras
import tensorflow as tf

from textgen import __version__, artifacts
from textgen.callbacks import EpochRecorder, SignalStop, TextSamples, TimeBudget
from textgen.errors import TextgenError
from textgen.dataset import training_dataset, validation_dataset
from textgen.model import build_model
from textgen.precision import cpu_flags, resolve_precision

# Validation at each epoch end scores at most this many windows of the held-out
# tail; ``textgen evaluate`` scores all of it.
MAX_VALIDATION_WINDOWS = 2048
# Vocabularies above this size get a hint about --max-vocab at the start of training.
LARGE_VOCABULARY = 10_000


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    directory: object
    precision: str
    best_loss: float
    epochs: list
    stopped_by_time_budget: bool
    stopped_by_signal: str = None  # "SIGINT" or "SIGTERM" when a signal ended the run


def _optimizer(train_config, precision):
    # Clipping the gradient norm tames the exploding gradients of long BPTT.
    optimizer = keras.optimizers.Adam(learning_rate=train_config.learning_rate, clipnorm=train_config.clip_norm)
    if precision == "mixed_float16":
        # float16's narrow range underflows small gradients; scale the loss up.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _versions():
    return {"textgen": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "python": platform.python_version()}


def _compiled_model(model_config, train_config, vocabulary_size, precision):
    model = build_model(model_config, vocabulary_size, precision=precision)
    model.compile(
        optimizer=_optimizer(train_config, precision),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _datasets(text, train_config):
    """(training dataset, steps per epoch, validation dataset or None)."""
    train_data, steps_per_epoch = training_dataset(
        text.train_ids, seq_length=train_config.seq_length, batch_size=train_config.batch_size, seed=train_config.seed
    )
    validation_data = None
    if len(text.validation_ids):
        validation_data = validation_dataset(
            text.validation_ids, seq_length=train_config.seq_length, batch_size=train_config.batch_size,
            max_windows=MAX_VALIDATION_WINDOWS,
        )
    return train_data, steps_per_epoch, validation_data


def train(text, *, directory, model_config, tokenizer_config, train_config, corpus_config, echo=None, verbose=1):
    """Train a model on prepared text and save it in ``directory`` (which must exist and be empty).

    Args:
        text: a ``TrainingText`` from ``prepare_training_text``.
        directory: the model directory (see artifacts.new_model_directory).
        model_config, tokenizer_config, train_config, corpus_config: the run's settings.
        echo: prints one line (default: print, flushed).
        verbose: Keras progress bar, 0 (silent) or 1.

    Returns:
        A ``TrainingResult``.
    """
    echo = echo or functools.partial(print, flush=True)
    gpu_available = bool(tf.config.list_physical_devices("GPU"))
    precision = resolve_precision(train_config.precision, gpu_available=gpu_available, flags=cpu_flags())
    keras.utils.set_random_seed(train_config.seed)
    # config.json and tokenizer.json first: a run's settings are on disk before its first step.
    artifacts.write_model_config(
        directory, model=model_config, tokenizer_config=tokenizer_config, train=train_config,
        corpus_config=corpus_config, corpus_summary=text.corpus.describe(), versions=_versions(),
    )
    artifacts.write_text(directory / artifacts.TOKENIZER_FILE, text.tokenizer.to_json())
    model = _compiled_model(model_config, train_config, text.tokenizer.vocabulary_size, precision)
    train_data, steps_per_epoch, validation_data = _datasets(text, train_config)
    epochs, logs = train_config.epochs_for(steps_per_epoch), directory / artifacts.LOGS_DIRECTORY
    echo(f"training a {model_config.num_layers}x{model_config.units} {model_config.cell} "
         f"({model.count_params():,} parameters, {text.tokenizer.vocabulary_size} tokens, {precision}) "
         f"on {len(text.train_ids):,} tokens; {epochs} epochs of {steps_per_epoch} steps")
    if text.tokenizer.vocabulary_size > LARGE_VOCABULARY and tokenizer_config.max_vocab is None:
        # The output layer costs vocabulary x units per token; past ~10k tokens it dominates each step.
        echo(f"note: {text.tokenizer.vocabulary_size:,} tokens make the output layer the slowest part; "
             f"--max-vocab {LARGE_VOCABULARY} or --min-count 2 trains faster")
    echo(f"watch it learn: tensorboard --logdir {logs}")
    budget = TimeBudget(train_config.time_budget)
    recorder = EpochRecorder(
        directory, characters_per_token=text.characters_per_token, echo=echo,
        characters_per_batch=train_config.batch_size * train_config.seq_length * text.characters_per_token,
    )
    interruption = SignalStop()
    callbacks = [
        budget,
        interruption,
        recorder,  # before TensorBoard: it adds bits/char and chars/s to the logs
        keras.callbacks.TensorBoard(log_dir=str(logs), write_graph=False, profile_batch=0),
        TextSamples(logs / "samples", text.tokenizer),
        keras.callbacks.TerminateOnNaN(),
    ]
    if train_config.patience is not None:
        monitored = "val_loss" if validation_data is not None else "loss"
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitored, patience=train_config.patience))
    # shuffle=False: the dataset shuffles its own windows.
    model.fit(train_data, steps_per_epoch=steps_per_epoch, epochs=epochs, validation_data=validation_data,
              callbacks=callbacks, shuffle=False, verbose=verbose)
    diverged = bool(recorder.history) and not math.isfinite(recorder.history[-1]["loss"])
    if not (directory / artifacts.MODEL_FILE).exists():
        raise TextgenError("training diverged (the loss became NaN) before any model was saved; "
                           "try a lower --learning-rate")
    if diverged:
        echo(f"stopped: the loss became NaN in epoch {len(recorder.history)}; kept the last good model")
    if interruption.received:
        echo(f"stopped by {interruption.received}")
    elif budget.expired:
        echo(f"time budget of {train_config.time_budget:g}s reached")
    echo(f"saved the best model (loss {recorder.best_loss:.4f}) to {directory}")
    return TrainingResult(directory, precision, recorder.best_loss, recorder.history, budget.expired,
                          interruption.received)
