"""The library entry point for training: a new run, a resumed one, or fine-tuning.

    import textgen
    result = textgen.train("notes.txt", time_budget="90s", units=128)
    print(result.directory, result.best_loss)
    textgen.train("notes.txt", name="notes", resume=True, time_budget="5m")   # go on where it stopped
    textgen.train("more_notes.txt", base="saved_models/notes")                # fine-tune

Settings are ``textgen train``'s options as keywords, spelled as the fields of
config.py (``seq_length=100`` is ``--seq-length 100``). Everything is checked
(settings, corpus, model directory) before TensorFlow loads, so a bad input
fails in a fraction of a second with nothing written. ``textgen train`` is a
thin shell over this function.
"""

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path

from textgen.cluster import read_cluster
from textgen.config import CorpusConfig, ModelConfig, TokenizerConfig, TrainConfig, training_configs
from textgen.data.corpus import resolve_corpus_sources
from textgen.data.corpus_directory import skipped_links_line
from textgen.data.training_text import prepare_training_text
from textgen.errors import TextgenError
from textgen.native_logs import quiet_native_logs
from textgen.saved.backup import check_backup_weights, read_backup
from textgen.saved.directory import check_model_name, check_new_model_directory, default_model_name
from textgen.saved.keras_archive import expected_weights
from textgen.saved.layout import SAVED_MODELS_DIRECTORY
from textgen.saved.run_directory import RunDirectory, check_not_being_trained, writer_lock
from textgen.saved.saved_model import load_saved_model
from textgen.settings import option_name
from textgen.training.plan import RunPlan

# What a resumed run may change; every other setting is the saved run's.
RESUMABLE_SETTINGS = ("epochs", "time_budget", "checkpoint_every", "strategy", "devices")


def train(
    corpus,
    *,
    name=None,
    overwrite=False,
    resume=False,
    base=None,
    drop_unknown=False,
    root=SAVED_MODELS_DIRECTORY,
    echo=None,
    progress_bar=False,
    callbacks=(),
    **settings,
):
    """Train a model on ``corpus`` and save it under ``root``/NAME.

    Args:
        corpus: a file, directory, glob or built-in corpus name ("python-stdlib"), or a list of them.
        name: the model directory's name (default: from the corpus, e.g. the file's stem).
        overwrite: replace an existing model of that name (only once the new run has saved a model).
        resume: continue the run ``name`` from its backup (same corpus; only epochs,
            time_budget, checkpoint_every, strategy and devices may be given).
        base: a model directory to fine-tune: its network and vocabulary, a fresh optimizer.
        drop_unknown: with ``base``, leave out characters the base model does not know.
        root: the directory model directories live in.
        echo: prints one line of progress (default: print).
        progress_bar: Keras's live progress bar, for a terminal.
        callbacks: more Keras callbacks, called before textgen's own.
        **settings: any field of ModelConfig, TokenizerConfig, TrainConfig or CorpusConfig.

    Returns:
        A ``TrainingResult``: directory, precision, best_loss, epochs (per-epoch metrics),
        stopped_by_time_budget, stopped_by_signal.
    """
    if "sources" in settings:
        raise TextgenError("name the corpus as train()'s first argument, not as sources=")
    sources = (corpus,) if isinstance(corpus, (str, os.PathLike)) else tuple(corpus)
    # The stack holds the writer lock, taken as soon as the directory is known, until the run ends.
    with contextlib.ExitStack() as stack:
        new = dict(overwrite=overwrite, base=base, drop_unknown=drop_unknown)
        new["echo"] = echo or print
        plan = _plan(sources, name=name, root=root, resume=resume, new=new, settings=settings, stack=stack)
        with quiet_native_logs():  # TensorFlow loads here, after every input is checked
            from textgen.training.loop import fit

        output = _output(plan, resume=resume, stack=stack)
        return fit(plan, output=output, echo=echo, progress_bar=progress_bar, callbacks=callbacks)


def _plan(sources, *, name, root, resume, new, settings, stack):
    """The checked RunPlan of a resumed or new run (``new``: the new run's overwrite, base, drop_unknown, echo)."""
    chief = not _cluster_worker(settings.get("strategy", "auto"))
    if resume:
        plan = _resume_plan(sources, name=name, root=root, settings=settings, stack=stack, lock=chief)
    else:
        # A worker that is not the chief trains in step with it, but writes to a directory of its own that
        # is removed at the end: the model directory is the chief's alone.
        root = root if chief else stack.enter_context(tempfile.TemporaryDirectory(prefix="textgen-worker-"))
        plan = _new_plan(sources, name=name, root=root, **new, settings=settings, stack=stack)
    return dataclasses.replace(plan, chief=chief)


def _output(plan, *, resume, stack):
    """The RunDirectory the run writes through (entered on ``stack``)."""
    if plan.chief:
        # A new run that fails before saving leaves nothing behind; an --overwrite keeps the old model until then.
        return stack.enter_context(RunDirectory(plan.directory, resume=resume))
    # A resumed worker reads the run's backup (the same path: a shared file system) and writes apart.
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="textgen-worker-")))
    return stack.enter_context(RunDirectory(scratch / plan.directory.name))


def _cluster_worker(strategy):
    """True in a multi-worker task that is not the chief (TF_CONFIG): it writes nothing of the model's."""
    if strategy not in ("auto", "multi-worker"):
        return False
    cluster = read_cluster()
    return cluster is not None and len(cluster.tasks) > 1 and not cluster.is_chief


def _flags(names):
    return ", ".join(f"--{option_name(name)}" for name in names)


def _new_plan(sources, *, name, overwrite, root, base, drop_unknown, settings, stack, echo):
    configs = training_configs({**settings, "sources": sources})
    base_model = base_network = None
    if base is not None:  # fine-tuning: the network and vocabulary are the base model's
        network_fields = {field.name for cls in (ModelConfig, TokenizerConfig) for field in dataclasses.fields(cls)}
        network_settings = sorted(set(settings) & network_fields)
        if network_settings:
            raise TextgenError(
                f"--from takes the network and vocabulary from {base}; leave out {_flags(network_settings)}"
            )
        base_model = load_saved_model(base)
        base_network, _ = base_model.read_weights()  # a broken base fails now, before the corpus is read
        configs[ModelConfig], configs[TokenizerConfig] = base_model.model, base_model.tokenizer_config
    elif drop_unknown:
        raise TextgenError("--drop-unknown only applies with --from MODEL")
    skipped = []  # symbolic links leading out of a corpus directory, not read
    resolved = resolve_corpus_sources(configs[CorpusConfig], skipped=skipped)
    if skipped:
        echo(skipped_links_line(skipped))
    directory = Path(root) / check_model_name(name or default_model_name(resolved[1]))
    check_not_being_trained(directory)  # early, before a big corpus is read; again under the lock below
    check_new_model_directory(directory, overwrite=overwrite)
    text, train_config = prepare_training_text(
        configs[CorpusConfig],
        configs[TokenizerConfig],
        configs[TrainConfig],
        resolved=resolved,
        tokenizer=base_model.tokenizer if base_model else None,
        drop_unknown=drop_unknown,
    )
    # Taken once the inputs are good, so a refused run leaves no lock file; then checked again under it.
    stack.enter_context(writer_lock(directory))
    check_new_model_directory(directory, overwrite=overwrite)
    return RunPlan(
        directory,
        text,
        configs[ModelConfig],
        configs[TokenizerConfig],
        train_config,
        configs[CorpusConfig],
        base=base_model,
        base_network=base_network,
    )


def _resume_plan(sources, *, name, root, settings, stack, lock=True):
    """Continue a run from its backup; every setting but RESUMABLE_SETTINGS comes from the saved run."""
    if name is None:
        raise TextgenError("--resume needs --name: the run to continue, under ./saved_models")
    fixed = sorted(set(settings) - set(RESUMABLE_SETTINGS))
    if fixed:
        raise TextgenError(
            f"--resume continues with the saved run's settings; only {_flags(RESUMABLE_SETTINGS)} "
            f"may be given, not {_flags(fixed)}"
        )
    directory = Path(root) / check_model_name(name)
    if not directory.is_dir():
        raise TextgenError(f"no model directory at {directory} to resume")
    if lock:  # the chief's; other workers of a cluster only read the backup
        stack.enter_context(writer_lock(directory))
    saved = load_saved_model(directory, require_weights=False)
    # Fail now, before the corpus is read, if there is nothing (safe) to resume.
    check_backup_weights(
        directory, read_backup(directory), expected_weights(saved.model, saved.tokenizer.vocabulary_size)
    )
    corpus_config = CorpusConfig(
        sources=sources,
        **{
            key: saved.corpus_setting(key)
            for key in ("encoding", "errors", "validation_fraction", "tfds_data_dir", "follow_links")
        },
    )
    # The time budget is this run's own (none unless given); the others keep the saved run's unless given.
    given = {key: settings[key] for key in RESUMABLE_SETTINGS if settings.get(key) is not None}
    train_config = dataclasses.replace(saved.train, **{"time_budget": None, **given})
    text, train_config = prepare_training_text(
        corpus_config, saved.tokenizer_config, train_config, tokenizer=saved.tokenizer
    )
    if text.corpus.sha256 != saved.corpus.get("sha256"):
        raise TextgenError(
            f"the corpus is not the text {directory} was trained on (its sha256 differs); resume with the same files"
        )
    return RunPlan(directory, text, saved.model, saved.tokenizer_config, train_config, corpus_config, resume=True)
