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

from textgen import __version__
from textgen.saved import artifacts
from textgen.training import cpu_threads
from textgen.training.callbacks import (Backup, EpochRecorder, LearningRateDecay, PlainModel, SignalStop, TextSamples,
                               TimeBudget)
from textgen.errors import TextgenError
from textgen.data.dataset import training_dataset, validation_dataset, windows_per_epoch
from textgen.model import build_model, compile_for_training
from textgen.training.precision import cpu_flags, resolve_precision

# Validation at each epoch end scores at most this many windows of the held-out
# tail (25,600 tokens at the default window: ~0.5 s here, where 2,048 windows
# took ~2 s of every epoch's training time); ``textgen evaluate`` scores all of it.
MAX_VALIDATION_WINDOWS = 512
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


def _versions():
    return {"textgen": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "python": platform.python_version()}


def _compiled_models(model_config, train_config, vocabulary_size, precision):
    """The model to train and the plain model that is validated and saved: the same one unless stateful."""
    batch_size = train_config.batch_size if train_config.stateful else None
    model = build_model(model_config, vocabulary_size, precision=precision, stateful_batch_size=batch_size)
    compile_for_training(model, learning_rate=train_config.learning_rate, clip_norm=train_config.clip_norm,
                         precision=precision)
    if not train_config.stateful:
        return model, model
    plain_model = build_model(model_config, vocabulary_size, precision=precision)
    # The training optimizer too, never stepped here: model.keras keeps Adam's state, as before.
    plain_model.compile(optimizer=model.optimizer, loss=model.loss)
    return model, plain_model


def _validation_data(text, train_config):
    if not len(text.validation_ids):
        return None
    return validation_dataset(text.validation_ids, seq_length=train_config.seq_length,
                              batch_size=train_config.batch_size, max_windows=MAX_VALIDATION_WINDOWS)


def fit_segments(global_step, steps_per_epoch, epochs):
    """The ``model.fit`` calls that continue a run from ``global_step``.

    Returns (initial_epoch, end_epoch, steps_per_epoch, batches_to_skip) tuples:
    first the rest of a partly trained epoch, if any, then whole epochs.
    """
    epoch, within = divmod(global_step, steps_per_epoch)
    segments = []
    if within:
        segments.append((epoch, epoch + 1, steps_per_epoch - within, global_step))
        epoch += 1
    if epoch < epochs:
        segments.append((epoch, epochs, steps_per_epoch, epoch * steps_per_epoch))
    return segments


def _start(directory, model, text, *, model_config, tokenizer_config, train_config, corpus_config, resume, base):
    """Where the run starts: a backup's state (weights loaded) or a new run's (settings written).

    A new run from a ``base`` model (fine-tuning) starts from its weights with a
    fresh optimizer: the new text gets full-size steps from the start.
    """
    if resume:
        artifacts.remove_temporary_files(directory)  # a killed run may have left some
        backup = artifacts.read_backup(directory)
        model.optimizer.build(model.trainable_variables)  # so the optimizer's state loads too
        model.load_weights(directory / backup["weights"])
        return backup
    # config.json and tokenizer.json first: a run's settings are on disk before its first step.
    artifacts.write_model_config(
        directory, model=model_config, tokenizer_config=tokenizer_config, train=train_config,
        corpus_config=corpus_config, corpus_summary=text.corpus.describe(), versions=_versions(),
        base=None if base is None else base.directory,
    )
    artifacts.write_text(directory / artifacts.TOKENIZER_FILE, text.tokenizer.to_json())
    if base is not None:
        layers, _ = artifacts.read_keras_archive(base.model_path)  # arrays only: no code from the file runs
        model.set_weights([array for layer in layers for array in layer.weights])
    return {"global_step": 0, "best_loss": math.inf, "history": [], "run": 0}


def _schedule_progress(start):
    """Where the learning-rate schedule starts: where a stopped run left it, from 0 for a new one.

    A run that finished its schedule (its budget or its steps ran out) and is
    resumed for more training gets a whole new schedule: otherwise it would
    train on at a learning rate of zero.
    """
    progress = start.get("schedule_progress", 0.0)
    return progress if progress < 1.0 else 0.0


def train(text, *, directory, model_config, tokenizer_config, train_config, corpus_config, echo=None, verbose=1,
          resume=False, base=None):
    """Train a model on prepared text and save it in ``directory``.

    Args:
        text: a ``TrainingText`` from ``prepare_training_text``.
        directory: the model directory (see artifacts.new_model_directory); empty unless resuming.
        model_config, tokenizer_config, train_config, corpus_config: the run's settings.
        echo: prints one line (default: print, flushed).
        verbose: Keras progress bar, 0 (silent) or 1.
        resume: continue from the directory's backup: same weights, optimizer state, epoch and step.
        base: a SavedModel to start from (fine-tuning); its weights must fit ``model_config``.

    Returns:
        A ``TrainingResult``.
    """
    echo = echo or functools.partial(print, flush=True)
    gpu_available = bool(tf.config.list_physical_devices("GPU"))
    if not gpu_available:
        cpu_threads.configure_for_training()  # before the first operation fixes the thread pools
    precision = resolve_precision(train_config.precision, gpu_available=gpu_available, flags=cpu_flags())
    keras.utils.set_random_seed(train_config.seed)
    model, plain_model = _compiled_models(model_config, train_config, text.tokenizer.vocabulary_size, precision)
    start = _start(directory, model, text, model_config=model_config, tokenizer_config=tokenizer_config,
                   train_config=train_config, corpus_config=corpus_config, resume=resume, base=base)
    steps_per_epoch = windows_per_epoch(len(text.train_ids), train_config.seq_length) // train_config.batch_size
    epochs, logs = train_config.epochs_for(steps_per_epoch), directory / artifacts.LOGS_DIRECTORY
    echo(f"training a {model_config.num_layers}x{model_config.units} {model_config.cell} "
         f"({model.count_params():,} parameters, {text.tokenizer.vocabulary_size} tokens, {precision}) "
         f"on {len(text.train_ids):,} tokens; {epochs} epochs of {steps_per_epoch} steps")
    if resume:
        epoch, within = divmod(start["global_step"], steps_per_epoch)
        echo(f"resuming at global step {start['global_step']:,}: epoch {epoch + 1}, step {within}")
    if text.tokenizer.vocabulary_size > LARGE_VOCABULARY and tokenizer_config.max_vocab is None:
        # The output layer costs vocabulary x units per token; past ~10k tokens it dominates each step.
        echo(f"note: {text.tokenizer.vocabulary_size:,} tokens make the output layer the slowest part; "
             f"--max-vocab {LARGE_VOCABULARY} or --min-count 2 trains faster")
    echo(f"watch it learn: tensorboard --logdir {logs}")
    budget, interruption = TimeBudget(train_config.time_budget), SignalStop()
    recorder = EpochRecorder(
        directory, plain_model, characters_per_token=text.characters_per_token, echo=echo,
        characters_per_batch=train_config.batch_size * train_config.seq_length * text.characters_per_token,
        history=start["history"], best_loss=start["best_loss"], run=start.get("run", 0) + 1,
    )
    learning_rate = LearningRateDecay(
        train_config.learning_rate_schedule, train_config.learning_rate,
        total_steps=train_config.total_steps(steps_per_epoch), time_budget=train_config.time_budget,
        progress=_schedule_progress(start),
    )
    validation_data = _validation_data(text, train_config)
    callbacks = [
        PlainModel(plain_model, validation_data),  # first: the others read its val_loss
        budget,
        interruption,
        learning_rate,
        recorder,  # before TensorBoard: it adds bits/char and chars/s to the logs
        keras.callbacks.TensorBoard(log_dir=str(logs), write_graph=False, profile_batch=0),
        TextSamples(logs / "samples", text.tokenizer),
        keras.callbacks.TerminateOnNaN(),
        Backup(directory, recorder, learning_rate, every=train_config.checkpoint_every),
    ]
    if train_config.patience is not None:
        monitored = "val_loss" if validation_data is not None else "loss"
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitored, patience=train_config.patience))
    for initial_epoch, end_epoch, steps, skip in fit_segments(start["global_step"], steps_per_epoch, epochs):
        train_data, _ = training_dataset(text.train_ids, seq_length=train_config.seq_length,
                                         batch_size=train_config.batch_size, seed=train_config.seed,
                                         skip_batches=skip, stateful=train_config.stateful)
        # shuffle=False: the dataset orders its own windows. Validation: PlainModel.
        model.fit(train_data, steps_per_epoch=steps, initial_epoch=initial_epoch, epochs=end_epoch,
                  callbacks=callbacks, shuffle=False, verbose=verbose)
        if model.stop_training:  # time budget, signal, NaN or patience
            break
    return _report(directory, recorder, budget, interruption, train_config, precision, echo)


def _report(directory, recorder, budget, interruption, train_config, precision, echo):
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
