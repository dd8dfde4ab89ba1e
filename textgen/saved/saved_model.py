"""A model directory read and checked as a whole; its files written.

``load_saved_model`` validates config.json and tokenizer.json (versions,
types, every setting) before anything uses them; ``SavedModel.read_weights``
validates ``model.keras`` against them. ``write_settings``, ``write_model`` and
``write_metrics`` are how training writes the directory (the backup pair:
backup.py). Nothing here imports TensorFlow.
"""

import dataclasses
from pathlib import Path

import numpy as np

from textgen.config import CorpusConfig, ModelConfig, TokenizerConfig, TrainConfig
from textgen.data.tokenizer import tokenizer_from_dict
from textgen.errors import TextgenError
from textgen.saved.atomic import FREE_SPACE_MARGIN_BYTES, atomic_write, read_json, write_json
from textgen.saved.backup import backup_global_step, check_backup_weights, check_history, read_backup
from textgen.saved.keras_archive import Network, expected_weights, read_keras_archive
from textgen.saved.layout import (
    BACKUP_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    METRICS_FILE,
    MODEL_FILE,
    SAVED_MODELS_DIRECTORY,
    TOKENIZER_FILE,
)
from textgen.settings import rule_of
from textgen.shell import printable, shell_command


@dataclasses.dataclass(frozen=True)
class SavedModel:
    """What a model directory holds, apart from the weights."""

    directory: Path
    model: ModelConfig
    tokenizer_config: TokenizerConfig
    train: TrainConfig
    corpus: dict  # name, files, characters, sha256 and the CorpusConfig's settings
    tokenizer: object
    versions: dict
    base: str = None  # the model directory this one was fine-tuned from

    @property
    def model_path(self):
        return self.directory / MODEL_FILE

    def corpus_setting(self, name):
        """A ``CorpusConfig`` setting the model was trained with (its default if not recorded), checked."""
        value = self.corpus.get(name, getattr(CorpusConfig, name))
        field = next(field for field in dataclasses.fields(CorpusConfig) if field.name == name)
        try:
            return rule_of(field).check(name, value)
        except (TextgenError, LookupError, TypeError) as error:  # LookupError: an encoding Python does not know
            raise TextgenError(f'{self.directory / CONFIG_FILE}\'s "corpus": {error}') from None

    def metrics(self):
        path = self.directory / METRICS_FILE
        return check_history(read_json(path), path) if path.exists() else []

    def read_weights(self):
        """The checked ``Network`` in model.keras and the optimizer steps it was trained for.

        Every array's shape comes from config.json and the tokenizer's size: an archive
        that holds anything else is refused before its arrays are read.
        """
        expected = expected_weights(self.model, self.tokenizer.vocabulary_size)
        layers, global_step = read_keras_archive(self.model_path, expected)
        return Network.from_layers(layers, source=str(self.model_path)), global_step


def _printable_strings(value):
    """``value`` (JSON data) with every string ``printable``: file names that are not UTF-8 included."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, (list, tuple)):
        return [_printable_strings(item) for item in value]
    if isinstance(value, dict):
        return {key: _printable_strings(item) for key, item in value.items()}
    return value


def write_settings(
    directory, *, model, tokenizer_config, train, corpus_config, corpus_summary, tokenizer, versions, base=None
):
    """config.json (every setting of the run) and tokenizer.json; ``base``: the model fine-tuned from."""
    write_json(
        Path(directory) / CONFIG_FILE,
        {
            "format_version": FORMAT_VERSION,
            "from": None if base is None else printable(base),
            "model": model.to_dict(),
            "tokenizer": tokenizer_config.to_dict(),
            "train": train.to_dict(),
            "corpus": _printable_strings({**corpus_summary, **corpus_config.to_dict()}),
            "versions": versions,
        },
    )
    # One line: a 3,600-character vocabulary is 3,600 lines when indented.
    write_json(Path(directory) / TOKENIZER_FILE, {"format_version": FORMAT_VERSION, **tokenizer.to_dict()}, indent=None)


def weights_file_bytes(model):
    """About how large a weights file of ``model`` is: float32 weights and Adam's two moments, and a margin."""
    return 3 * 4 * model.count_params() + FREE_SPACE_MARGIN_BYTES


def write_model(directory, model):
    """model.keras: the Keras archive of ``model`` (weights and optimizer state), whole or not at all."""
    atomic_write(Path(directory) / MODEL_FILE, model.save, expected_bytes=weights_file_bytes(model))


def write_metrics(directory, history):
    """metrics.json: one record per epoch, of every run of the model."""
    write_json(Path(directory) / METRICS_FILE, history)


def _check_version(path, data):
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise TextgenError(f"{path} has format_version {version!r}; this textgen reads {FORMAT_VERSION}")
    return data


def _refuse_unfinished_run(directory):
    """A run stopped before its first model was saved: say whether and how it can go on."""
    if (directory / BACKUP_FILE).is_file():
        step = backup_global_step(directory)
        raise TextgenError(
            f"{directory} is an unfinished run with no model saved yet (its backup is at step {step:,}); "
            f"continue it with `{shell_command('textgen', 'train', 'CORPUS', '--name', directory.name, '--resume')}`"
        )
    raise TextgenError(
        f"{directory} is a run that stopped before it saved anything; train it again with "
        f"{shell_command('--name', directory.name)}"
    )


def load_saved_model(directory, *, require_weights=True):
    """Read and validate a model directory's config and tokenizer (the weights: ``read_weights``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TextgenError(f"no model directory at {directory}")
    # A run that saved no model: sample and evaluate need one; info and --resume need at least a backup.
    unfinished = not (directory / MODEL_FILE).exists() and (directory / CONFIG_FILE).is_file()
    if unfinished and (require_weights or not (directory / BACKUP_FILE).exists()):
        _refuse_unfinished_run(directory)
    for name in (CONFIG_FILE, TOKENIZER_FILE) + ((MODEL_FILE,) if require_weights else ()):
        if (directory / name).exists() and not (directory / name).is_file():
            raise TextgenError(f"{directory / name} is not a regular file")
        if not (directory / name).is_file():
            raise TextgenError(f"{directory} is not a complete textgen model: {name} is missing")
    config = _check_version(directory / CONFIG_FILE, read_json(directory / CONFIG_FILE))
    tokenizer_data = _check_version(directory / TOKENIZER_FILE, read_json(directory / TOKENIZER_FILE))
    try:
        sections = {key: config[key] for key in ("model", "tokenizer", "train")}
        corpus, versions, base = config.get("corpus", {}), config.get("versions", {}), config.get("from")
        if not (isinstance(corpus, dict) and isinstance(versions, dict) and isinstance(base, (str, type(None)))):
            raise TypeError("corpus, versions or from")
        saved = SavedModel(
            directory=directory,
            model=ModelConfig.from_dict(sections["model"], source=f'{directory / CONFIG_FILE}\'s "model"'),
            tokenizer_config=TokenizerConfig.from_dict(
                sections["tokenizer"], source=f'{directory / CONFIG_FILE}\'s "tokenizer"'
            ),
            train=TrainConfig.from_dict(sections["train"], source=f'{directory / CONFIG_FILE}\'s "train"'),
            corpus=corpus,
            tokenizer=tokenizer_from_dict(tokenizer_data),
            versions=versions,
            base=base,
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise TextgenError(f"{directory / CONFIG_FILE} is missing or has a malformed entry: {error}") from None
    # The rest is checked now too: a directory with one malformed file is not used at all.
    saved.metrics()
    if (directory / BACKUP_FILE).exists():
        read_backup(directory)
    return saved


def resume_command(saved_model):
    """The command that continues ``saved_model``'s run from its backup, as a user would type it.

    ``--resume`` finds runs under ./saved_models, so for a model elsewhere the command starts with a cd.
    """
    sources = saved_model.corpus.get("sources") or ["CORPUS"]
    command = shell_command("textgen", "train", *sources, "--name", saved_model.directory.name, "--resume")
    root = saved_model.directory.parent
    if root == Path(SAVED_MODELS_DIRECTORY) or root.name != SAVED_MODELS_DIRECTORY:
        return command
    return f"{shell_command('cd', root.parent)} && {command}"


def describe(saved_model):
    """Everything ``textgen info`` reports, as one JSON-ready dict.

    A run stopped before it saved a model, but with a backup, is described too
    (``"saved": false``, the backup's step, and the command that resumes it).
    """
    expected = expected_weights(saved_model.model, saved_model.tokenizer.vocabulary_size)
    saved = saved_model.model_path.exists()
    if saved:
        _, global_step = saved_model.read_weights()  # every array checked, as sample would
    elif (saved_model.directory / BACKUP_FILE).is_file():
        check_backup_weights(saved_model.directory, read_backup(saved_model.directory), expected)
        global_step = 0
    else:
        _refuse_unfinished_run(saved_model.directory)
    report = {
        "directory": str(saved_model.directory),
        "saved": saved,
        "model": saved_model.model.to_dict(),
        "tokenizer": {
            **saved_model.tokenizer_config.to_dict(),
            "vocabulary_size": saved_model.tokenizer.vocabulary_size,
        },
        "train": saved_model.train.to_dict(),
        "corpus": saved_model.corpus,
        "from": saved_model.base,
        "parameters": sum(int(np.prod(shape)) for _, shapes in expected for shape in shapes),
        # Steps trained in all runs together: the backup is written last, the best model maybe earlier.
        "global_step": max(global_step, backup_global_step(saved_model.directory)),
        "metrics": saved_model.metrics(),
        "versions": saved_model.versions,
    }
    if not saved:
        report["resume"] = resume_command(saved_model)
    return report
