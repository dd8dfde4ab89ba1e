"""The fit loop: a planned run -> the hardware set up, compiled models, callbacks, ``model.fit``, a result.

The text arrives prepared and checked, and the directory chosen (training/run.py
makes the ``RunPlan``, training/plan.py); this module owns the TensorFlow side. The best model by
validation loss is written atomically to ``model.keras`` at each epoch end
where it improves, so a run stopped by its time budget, by NaN, by a signal or
killed leaves the best model it reached.
"""

import functools
import os

import keras
import tensorflow as tf

from textgen.cluster import plan_distribution
from textgen.data.dataset import training_dataset
from textgen.errors import TextgenError
from textgen.hardware import cpu_threads
from textgen.hardware.fused_rnn import FUSED_LAYERS
from textgen.hardware.kernel_choice import choose_training_path
from textgen.hardware.precision import cpu_flags
from textgen.hardware.strategy import start_distribution
from textgen.model import build_model, compile_for_training
from textgen.native_logs import quiet_native_logs
from textgen.training.checkpoints import fit_segments
from textgen.training.plan import Hardware, RunShape
from textgen.training.report import announce, report
from textgen.training.run_callbacks import run_callbacks
from textgen.training.start import run_description, start


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
    hardware = _prepare_hardware(plan.train, echo)
    distribution = hardware.distribution
    with distribution.scope():  # the variables are made once per replica, kept in step by the strategy
        model, plain_model = _compiled_models(plan, hardware)
        for each in {id(model): model, id(plain_model): plain_model}.values():  # once each: they may be one
            distribution.adapt_model(each)
        state = start(plan, model, output.path)  # a resumed run restores from plan.directory
    distribution.check_same_run(run_description(plan, state))
    if distribution.describe():
        echo(f"training with {distribution.describe()}")
    shape = RunShape.of(plan)
    announce(plan, shape, model, hardware, state, echo=echo)
    ours = run_callbacks(
        plan,
        shape,
        output=output,
        plain_model=plain_model,
        state=state,
        distribution=distribution,
        progress_bar=progress_bar,
        echo=echo,
    )
    try:
        _fit_segments(plan, shape, model, state, distribution, [*callbacks, *ours.callbacks], progress_bar)
    finally:
        ours.close()
    return report(plan, output, state, hardware, ours, echo=echo)


def _prepare_hardware(train_config, echo):
    """Strategy, CPU thread pools, dtype policy, kernel and seeds, as a plan.Hardware.

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
    return Hardware(distribution, precision, kernel)


def _compiled_models(plan, hardware):
    """The model to train and the plain model that is validated and saved.

    They are one model unless training is stateful (a fixed batch and a carried
    state) or runs the fused layers (hardware/fused_rnn.py): then the plain
    model is a twin made of Keras's own layers, with the same weights.
    """
    vocabulary_size, train_config, precision = plan.text.tokenizer.vocabulary_size, plan.train, hardware.precision
    batch_size = train_config.batch_size if train_config.stateful else None
    layer_class = FUSED_LAYERS[plan.model.cell] if hardware.kernel == "onednn" else None
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


def _fit_segments(plan, shape, model, state, distribution, callbacks, progress_bar):
    """``model.fit`` from the run's global step: the rest of a partly trained epoch, then whole ones."""
    train = plan.train
    for initial_epoch, end_epoch, steps, skip in fit_segments(state.global_step, shape):

        def make_dataset(replicas, skip=skip):
            dataset, _ = training_dataset(
                plan.text.train_ids,
                seq_length=train.seq_length,
                batch_size=train.batch_size,
                seed=train.seed,
                skip_batches=skip,
                stateful=train.stateful,
                replicas=replicas,
            )
            return dataset

        # shuffle=False: the dataset orders its own windows. Validation: PlainModel.
        model.fit(
            distribution.datasets(make_dataset),
            steps_per_epoch=steps,
            initial_epoch=initial_epoch,
            epochs=end_epoch,
            callbacks=callbacks,
            shuffle=False,
            verbose=1 if progress_bar else 0,
        )
        if model.stop_training:  # time budget, signal, NaN or patience
            break
