"""The fit loop: a planned run -> compiled model, callbacks, ``model.fit``, a result.

The text arrives prepared and checked, and the directory chosen (training/run.py
makes the ``RunPlan``, training/plan.py); this module owns the TensorFlow side. The best model by
validation loss is written atomically to ``model.keras`` at each epoch end
where it improves, so a run stopped by its time budget, by NaN, by a signal or
killed leaves the best model it reached.
"""

import functools
import json
import math
import os
import platform

import keras
import tensorflow as tf

from textgen.cluster import plan_distribution
from textgen.data.dataset import training_dataset, validation_dataset
from textgen.errors import TextgenError
from textgen.hardware import cpu_threads
from textgen.hardware.fused_rnn import FUSED_LAYERS
from textgen.hardware.kernel_choice import choose_training_path
from textgen.hardware.precision import cpu_flags
from textgen.hardware.strategy import start_distribution
from textgen.model import build_model, compile_for_training
from textgen.native_logs import quiet_native_logs
from textgen.saved.layout import LOGS_DIRECTORY, MODEL_FILE, SAMPLES_LOGS
from textgen.saved.saved_model import write_settings
from textgen.training.callbacks import (
    BestModel,
    EpochLog,
    EpochMetrics,
    PlainModel,
    SignalStop,
    TimeBudget,
    WorkersAgree,
)
from textgen.training.checkpoints import Backup, RunState, fit_segments, restore
from textgen.training.plan import TrainingResult
from textgen.training.progress import ProgressLog
from textgen.training.schedule import LearningRateDecay
from textgen.training.tensorboard_logs import StepScalars, TextSamples
from textgen.version import __version__

# Validation at each epoch end scores at most this many windows of the held-out
# tail (25,600 tokens at the default window: ~0.5 s here, where 2,048 windows
# took ~2 s of every epoch's training time); ``textgen evaluate`` scores all of it.
MAX_VALIDATION_WINDOWS = 512
# Vocabularies above this size get a hint about --max-vocab at the start of training.
LARGE_VOCABULARY = 10_000


def _prepare_hardware(train_config, echo):
    """Strategy, CPU thread pools, dtype policy, kernel and seeds: (distribution, precision, kernel).

    Order matters: the thread pools and logical CPUs can only be set before
    TensorFlow's runtime starts, and a strategy starts it.
    """
    with quiet_native_logs():  # finding no GPU logs a CUDA "error" that is none
        gpus = len(tf.config.list_physical_devices("GPU"))
    kind, cluster, local_replicas = plan_distribution(train_config, gpus=gpus)
    if kind != "one" and train_config.stateful:
        raise TextgenError(f"--stateful trains on one device; it cannot run under --strategy {kind}")
    cores = cpu_threads.available_cores()
    if kind == "multi-worker" and cluster.tasks_on_this_host > 1:
        # Workers on one machine share its cores: each takes its part, or their thread pools fight
        # over the same cores (oneDNN's OpenMP threads spin while they wait: 224 steps took minutes).
        cores = max(1, cores // cluster.tasks_on_this_host)
        os.environ.setdefault("OMP_NUM_THREADS", str(cores))  # read when oneDNN's OpenMP library loads, below
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    precision, kernel, note = choose_training_path(train_config, gpu_available=gpus > 0, flags=cpu_flags())
    if kernel == "onednn" and local_replicas > 1:  # one workspace per layer: one replica per process
        kernel = "keras"
        note = f"the oneDNN kernel trains one replica per process; these {local_replicas} use Keras's layers"
    if note:
        echo(note)
    if not gpus:  # before the first operation fixes the thread pools
        cpu_threads.configure_for_training(cores, fused_kernel=kernel == "onednn")
    with quiet_native_logs():
        distribution = start_distribution(kind, cluster, train_config, gpus=gpus)
    if train_config.batch_size % distribution.replicas:
        raise TextgenError(
            f"--batch-size {train_config.batch_size} does not split evenly over {distribution.replicas} replicas; "
            f"use a multiple of {distribution.replicas} (it is the global batch)"
        )
    keras.utils.set_random_seed(train_config.seed)
    return distribution, precision, kernel


def _compiled_models(plan, precision, kernel):
    """The model to train and the plain model that is validated and saved.

    They are one model unless training is stateful (a fixed batch and a carried
    state) or runs the fused layers (hardware/fused_rnn.py): then the plain
    model is a twin made of Keras's own layers, with the same weights.
    """
    vocabulary_size, train_config = plan.text.tokenizer.vocabulary_size, plan.train
    batch_size = train_config.batch_size if train_config.stateful else None
    layer_class = FUSED_LAYERS[plan.model.cell] if kernel == "onednn" else None
    model = build_model(
        plan.model, vocabulary_size, precision=precision, stateful_batch_size=batch_size, layer_class=layer_class
    )
    compile_for_training(
        model, learning_rate=train_config.learning_rate, clip_norm=train_config.clip_norm, precision=precision
    )
    if not train_config.stateful and layer_class is None:
        return model, model
    plain_model = build_model(plan.model, vocabulary_size, precision=precision)
    # The training optimizer too, never stepped here: model.keras keeps Adam's state, as before.
    plain_model.compile(optimizer=model.optimizer, loss=model.loss)
    return model, plain_model


def _run_description(plan, state):
    """What every worker of a cluster must agree on: settings (but the budget's length), text, vocabulary, step."""
    # The budget may differ (workers stop together), but all or none must have one: the rate follows it.
    train = {**plan.train.to_dict(), "time_budget": plan.train.time_budget is not None}
    parts = [
        plan.model.to_dict(),
        plan.tokenizer.to_dict(),
        train,
        plan.text.corpus.sha256,
        plan.text.tokenizer.vocabulary,
        state.global_step,
    ]
    return json.dumps(parts, sort_keys=True, default=str)


def _start(plan, model, directory):
    """Where the run starts: a backup's state (weights loaded), or a new run's (settings written first).

    A new run from a ``base`` model (fine-tuning) starts from its weights with a
    fresh optimizer: the new text gets full-size steps from the start.
    """
    if plan.resume:
        return restore(plan.directory, model)
    versions = {
        "textgen": __version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }
    write_settings(
        directory,
        model=plan.model,
        tokenizer_config=plan.tokenizer,
        train=plan.train,
        corpus_config=plan.corpus,
        corpus_summary=plan.text.corpus.describe(),
        tokenizer=plan.text.tokenizer,
        versions=versions,
        base=None if plan.base is None else plan.base.directory,
    )
    if plan.base_network is not None:  # checked arrays only: no code from the base's files runs
        model.set_weights(plan.base_network.arrays)
    return RunState()


def _announce(plan, model, precision, kernel, state, *, epochs, steps_per_epoch, echo):
    text, config = plan.text, plan.model
    echo(
        f"training a {config.layers}x{config.units} {config.cell} ({model.count_params():,} parameters, "
        f"{text.tokenizer.vocabulary_size} tokens, {precision}, {kernel} kernel) on {len(text.train_ids):,} tokens; "
        f"{epochs} epochs of {steps_per_epoch} steps"
    )
    if plan.resume:
        epoch, within = divmod(state.global_step, steps_per_epoch)
        echo(f"resuming at global step {state.global_step:,}: epoch {epoch + 1}, step {within}")
    if text.tokenizer.vocabulary_size > LARGE_VOCABULARY and plan.tokenizer.max_vocab is None:
        # The output layer costs vocabulary x units per token; past ~10k tokens it dominates each step.
        echo(
            f"note: {text.tokenizer.vocabulary_size:,} tokens make the output layer the slowest part; "
            f"--max-vocab {LARGE_VOCABULARY} or --min-count 2 trains faster"
        )
    if plan.chief:  # other workers log to a temporary directory
        echo(f"watch it learn: tensorboard --logdir {plan.directory / LOGS_DIRECTORY}")


def _validation_data(plan):
    if not len(plan.text.validation_ids):
        return None
    return validation_dataset(
        plan.text.validation_ids,
        seq_length=plan.train.seq_length,
        batch_size=plan.train.batch_size,
        max_windows=MAX_VALIDATION_WINDOWS,
    )


def _callbacks(
    plan, output, plain_model, state, *, budget, interruption, distribution, steps_per_epoch, progress_bar, echo
):
    """Ours and Keras's, in the order Keras must call them."""
    directory, train_config, text = output.path, plan.train, plan.text
    logs = directory / LOGS_DIRECTORY
    validation_data = _validation_data(plan)
    characters_per_batch = train_config.batch_size * train_config.seq_length * text.characters_per_token
    clocked_rate = train_config.time_budget is not None
    agreement = [WorkersAgree(distribution, clocked_rate=clocked_rate)] if distribution.kind == "multi-worker" else []
    callbacks = [
        budget,
        interruption,
        PlainModel(plain_model, validation_data),  # puts val_loss in the logs, for everything below
        LearningRateDecay(
            train_config.lr_schedule,
            train_config.learning_rate,
            state=state,
            total_steps=train_config.total_steps(steps_per_epoch),
            time_budget=train_config.time_budget,
        ),
        *agreement,  # after the rate is set and the stop wished for, before anything acts on them
        EpochMetrics(characters_per_token=text.characters_per_token, characters_per_batch=characters_per_batch),
        BestModel(output, plain_model, state),
        EpochLog(directory, state, echo=echo),
        StepScalars(logs, characters_per_token=text.characters_per_token, characters_per_batch=characters_per_batch),
        TextSamples(logs / SAMPLES_LOGS, text.tokenizer),
        keras.callbacks.TerminateOnNaN(),
        Backup(directory, state, every=train_config.checkpoint_every),  # last: it saves what the others updated
    ]
    if not progress_bar:  # off a terminal (a log file): a line every half minute instead of the live bar
        epochs = train_config.epochs_for(steps_per_epoch)
        progress = ProgressLog(
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
            characters_per_batch=characters_per_batch,
            time_budget=train_config.time_budget,
            echo=echo,
        )
        callbacks.append(progress)
    if train_config.patience is not None:
        monitored = "val_loss" if validation_data is not None else "loss"
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitored, patience=train_config.patience))
    return callbacks


def fit(plan, *, output, echo=None, progress_bar=False, callbacks=()):
    """Train as ``plan`` says and save the model in ``plan.directory``.

    Args:
        plan: a ``RunPlan`` (see training/run.py, which makes one).
        output: where the files go (saved.run_directory.RunDirectory: ``plan.directory``, or its staging
            sibling until the first model of an ``--overwrite`` run is saved).
        echo: prints one line (default: print, flushed).
        progress_bar: Keras's live progress bar (for a terminal).
        callbacks: more Keras callbacks, called before textgen's own.

    Returns:
        A ``TrainingResult``.
    """
    echo = echo or functools.partial(print, flush=True)
    distribution, precision, kernel = _prepare_hardware(plan.train, echo)
    with distribution.scope():  # the variables are made once per replica, kept in step by the strategy
        model, plain_model = _compiled_models(plan, precision, kernel)
        for each in {id(model): model, id(plain_model): plain_model}.values():  # once each: they may be one
            distribution.adapt_model(each)
        state = _start(plan, model, output.path)  # a resumed run restores from plan.directory
    distribution.check_same_run(_run_description(plan, state))
    if distribution.describe():
        echo(f"training with {distribution.describe()}")
    steps_per_epoch = plan.text.steps_per_epoch(plan.train)
    epochs = plan.train.epochs_for(steps_per_epoch)
    _announce(plan, model, precision, kernel, state, epochs=epochs, steps_per_epoch=steps_per_epoch, echo=echo)
    budget, interruption = TimeBudget(plan.train.time_budget), SignalStop()
    ours = _callbacks(
        plan,
        output,
        plain_model,
        state,
        budget=budget,
        interruption=interruption,
        distribution=distribution,
        steps_per_epoch=steps_per_epoch,
        progress_bar=progress_bar,
        echo=echo,
    )
    try:
        _fit_segments(plan, model, state, distribution, [*callbacks, *ours], steps_per_epoch, epochs, progress_bar)
    finally:  # also when training fails: Keras then skips on_train_end
        interruption.restore()
        for callback in ours:
            if hasattr(callback, "close"):
                callback.close()  # TensorBoard's event files
    if any(getattr(callback, "stopped_by_another", False) for callback in ours):
        echo("stopped with the other workers: one of them reached its time budget or was interrupted")
    return _report(plan, output, state, precision, kernel, budget=budget, interruption=interruption, echo=echo)


def _fit_segments(plan, model, state, distribution, callbacks, steps_per_epoch, epochs, progress_bar):
    """``model.fit`` from the run's global step: the rest of a partly trained epoch, then whole ones."""
    for initial_epoch, end_epoch, steps, skip in fit_segments(state.global_step, steps_per_epoch, epochs):

        def make_dataset(replicas, skip=skip):
            dataset, _ = training_dataset(
                plan.text.train_ids,
                seq_length=plan.train.seq_length,
                batch_size=plan.train.batch_size,
                seed=plan.train.seed,
                skip_batches=skip,
                stateful=plan.train.stateful,
                replicas=replicas,
            )
            return dataset

        train_data = distribution.datasets(make_dataset)
        # shuffle=False: the dataset orders its own windows. Validation: PlainModel.
        model.fit(
            train_data,
            steps_per_epoch=steps,
            initial_epoch=initial_epoch,
            epochs=end_epoch,
            callbacks=callbacks,
            shuffle=False,
            verbose=1 if progress_bar else 0,
        )
        if model.stop_training:  # time budget, signal, NaN or patience
            break


def _report(plan, output, state, precision, kernel, *, budget, interruption, echo):
    if plan.chief and (not output.published or not (plan.directory / MODEL_FILE).exists()):
        intact = f"; the previous model in {plan.directory} is intact" if output.staged else ""
        raise TextgenError(
            f"training diverged (the loss became NaN or infinite) before any model was saved{intact}; "
            f"try a lower --learning-rate"
        )
    if state.history and not math.isfinite(state.history[-1]["loss"]):
        echo(f"stopped: the loss became NaN in epoch {state.history[-1]['epoch']}; kept the last good model")
    if interruption.received:
        echo(f"stopped by {interruption.received}")
    elif budget.expired:
        echo(f"time budget of {plan.train.time_budget:g}s reached")
    if not plan.chief:  # a cluster's other worker: its files were temporary
        echo("this worker's part is done; the chief saved the model")
        return TrainingResult(
            None, precision, state.best_loss, state.history, budget.expired, interruption.received, kernel
        )
    echo(f"saved the best model (loss {state.best_loss:.4f}) to {plan.directory}")
    return TrainingResult(
        plan.directory, precision, state.best_loss, state.history, budget.expired, interruption.received, kernel
    )
