"""The saved-model directory: its file names, atomic writes and safe reading.

    saved_models/NAME/
      config.json     {"format_version", "model", "tokenizer", "train", "corpus", "versions"}
      tokenizer.json  vocabulary and kind (see tokenizer.py)
      model.keras     Keras 3 archive: config.json + model.weights.h5 (+ optimizer state)
      metrics.json    one entry per epoch
      logs/           TensorBoard event files

Reading never imports TensorFlow and never calls ``keras.models.load_model``
(whose safe mode has been bypassed more than once): ``model.keras`` is opened
as the zip + HDF5 file it is, and only plain arrays come out of it.
"""

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from textgen.config import CorpusConfig, ModelConfig, TokenizerConfig, TrainConfig
from textgen.errors import TextgenError
from textgen.data.tokenizer import tokenizer_from_json

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
BACKUP_FILE = "backup.json"  # where a resumed run starts: global step, best loss, history, weights file
LOGS_DIRECTORY = "logs"
SAVED_MODELS_DIRECTORY = "saved_models"

# The only Keras layers a textgen model is built from (model.py); anything else
# in an archive means it is not ours, and it is refused.
KNOWN_LAYERS = {"InputLayer", "Embedding", "SimpleRNN", "LSTM", "GRU", "Dropout", "Dense"}


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename over ``path``: readers never see half a file."""
    path = Path(path)
    # Keras insists on its own extensions; other files get ".tmp". The leading
    # dot marks every temporary file as not (yet) part of the model.
    suffix = next((ending for ending in (".weights.h5", ".keras") if path.name.endswith(ending)), path.suffix + ".tmp")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=suffix)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes files private; use the user's umask
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_text(path, text):
    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_model_name(name):
    """A model name is one plain path component: letters, digits, '.', '_' and '-'."""
    if not _MODEL_NAME.match(name or ""):
        raise TextgenError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (max 100)")
    return name


def default_model_name(corpus_name):
    """A valid model name made from a corpus name ("my notes" -> "my_notes")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", corpus_name).strip("._-")[:100]
    return name or "model"


def check_new_model_directory(root, name, *, overwrite):
    """The directory a new model goes to; an error if it exists and ``overwrite`` is off."""
    directory = Path(root) / check_model_name(name)
    if (directory.exists() or directory.is_symlink()) and not overwrite:
        raise TextgenError(f"{directory} already exists; pass --overwrite to replace it, or choose another --name")
    if directory.exists() and not directory.is_dir():
        raise TextgenError(f"{directory} exists and is not a directory")
    return directory


@contextlib.contextmanager
def new_model_directory(directory):
    """Create ``directory`` for a training run; on failure leave nothing half-written.

    An existing directory (``--overwrite``) is set aside, not deleted, until the
    new run has saved a model: if the run fails first, the old model comes back.
    """
    directory = Path(directory)
    backup = directory.with_name(f".{directory.name}.replaced")
    if directory.exists():
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(directory, backup)
    directory.mkdir(parents=True)
    try:
        yield directory
    except BaseException:
        if not (directory / MODEL_FILE).exists():
            shutil.rmtree(directory, ignore_errors=True)
            if backup.exists():
                os.replace(backup, directory)
        raise
    finally:
        if backup.exists() and (directory / MODEL_FILE).exists():
            shutil.rmtree(backup, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class SavedModel:
    """What a model directory holds, apart from the weights."""

    directory: Path
    model: ModelConfig
    tokenizer_config: TokenizerConfig
    train: TrainConfig
    corpus: dict
    tokenizer: object
    versions: dict
    base: str = None  # the model directory this one was fine-tuned from

    @property
    def model_path(self):
        return self.directory / MODEL_FILE

    def metrics(self):
        path = self.directory / METRICS_FILE
        return _read_json(path) if path.exists() else []


def write_model_config(directory, *, model, tokenizer_config, train, corpus_config, corpus_summary, versions,
                       base=None):
    """config.json: every setting of the run; ``base`` names the model it was fine-tuned from, if any."""
    write_json(
        Path(directory) / CONFIG_FILE,
        {
            "format_version": FORMAT_VERSION,
            "from": None if base is None else str(base),
            "model": model.to_dict(),
            "tokenizer": tokenizer_config.to_dict(),
            "train": train.to_dict(),
            "corpus": {**corpus_summary, "sources": list(corpus_config.sources),
                       "encoding": corpus_config.encoding, "errors": corpus_config.errors,
                       "validation_fraction": corpus_config.validation_fraction},
            "versions": versions,
        },
    )


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise TextgenError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError:
        raise TextgenError(f"{path} is not valid JSON (a corrupt or partial model directory?)") from None


def load_saved_model(directory, *, require_weights=True):
    """Read and validate a model directory's config and tokenizer (no weights yet)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TextgenError(f"no model directory at {directory}")
    for name in (CONFIG_FILE, TOKENIZER_FILE) + ((MODEL_FILE,) if require_weights else ()):
        if not (directory / name).is_file():
            raise TextgenError(f"{directory} is not a complete textgen model: {name} is missing")
    config = _read_json(directory / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        version = config.get("format_version") if isinstance(config, dict) else None
        raise TextgenError(f"{directory / CONFIG_FILE} has format_version {version!r}; this textgen reads {FORMAT_VERSION}")
    try:
        tokenizer = tokenizer_from_json((directory / TOKENIZER_FILE).read_text(encoding="utf-8"))
        return SavedModel(
            directory=directory,
            model=ModelConfig.from_dict(config["model"]),
            tokenizer_config=TokenizerConfig.from_dict(config["tokenizer"]),
            train=TrainConfig.from_dict(config["train"]),
            corpus=config.get("corpus", {}),
            tokenizer=tokenizer,
            versions=config.get("versions", {}),
            base=config.get("from"),
        )
    except (KeyError, TypeError) as error:
        raise TextgenError(f"{directory / CONFIG_FILE} is missing or has a malformed entry: {error}") from None


def write_backup(directory, save_weights, state):
    """A resumable backup: weights (with optimizer state) first, then backup.json pointing at them.

    backup.json switches atomically from the previous complete weights file to
    the new one, so a kill at any moment leaves a consistent pair.
    """
    directory = Path(directory)
    weights = f"backup-{state['global_step']}.weights.h5"
    atomic_write(directory / weights, save_weights)
    previous = read_backup(directory) if (directory / BACKUP_FILE).exists() else None
    write_json(directory / BACKUP_FILE, {**state, "weights": weights})
    if previous and previous["weights"] != weights:
        (directory / previous["weights"]).unlink(missing_ok=True)


def remove_temporary_files(directory):
    """Delete temporary files a killed process left behind (atomic_write names them ".NAME-...")."""
    for path in Path(directory).glob(".*-*"):
        if path.is_file() and path.name.endswith((".tmp", ".keras", ".weights.h5")):
            path.unlink()


def read_backup(directory):
    """The state written by write_backup; a clear error when there is none to resume."""
    path = Path(directory) / BACKUP_FILE
    if not path.is_file():
        raise TextgenError(f"no training backup in {directory} to resume from (it is written at the end of a run "
                           f"and every --checkpoint-every steps)")
    state = _read_json(path)
    weights = state.get("weights", "") if isinstance(state, dict) else ""
    if not re.match(r"^backup-\d+\.weights\.h5$", weights) or not (Path(directory) / weights).is_file():
        raise TextgenError(f"{path} names no backup weights file that exists")
    return state


def newest_model_directory(root=SAVED_MODELS_DIRECTORY):
    """The model directory under ``root`` whose weights were saved last."""
    root = Path(root)
    candidates = [path.parent for path in root.glob(f"*/{MODEL_FILE}")] if root.is_dir() else []
    if not candidates:
        raise TextgenError(f"no saved model under {root.resolve()}; train one with `textgen train CORPUS`")
    return max(candidates, key=lambda directory: (directory / MODEL_FILE).stat().st_mtime)


@dataclasses.dataclass(frozen=True)
class KerasLayer:
    """One layer of a saved Keras model: its class, its config and its weight arrays."""

    class_name: str
    config: dict
    weights: list


def _weights_group_names(class_names):
    # Keras's saving_lib stores each layer's variables under
    # layers/<snake_case class name>[_N], numbered in model.layers order.
    seen, names = {}, []
    for class_name in class_names:
        base = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)  # Keras's to_snake_case:
        base = re.sub("([a-z])([A-Z])", r"\1_\2", base).lower()  # SimpleRNN -> simple_rnn
        count = seen.get(base, 0)
        names.append(base if count == 0 else f"{base}_{count}")
        seen[base] = count + 1
    return names


def _collect_arrays(group):
    """A layer group's arrays in Keras order: vars/0, vars/1, ... (an RNN's live under cell/)."""
    if "cell" in group:
        group = group["cell"]
    variables = group.get("vars", {})
    return [variables[str(index)][()] for index in range(len(variables))]


def read_keras_archive(path):
    """Layers (in order, with weights) and the optimizer step count of a ``model.keras`` file."""
    import h5py  # numpy-only HDF5 reader; far lighter than TensorFlow

    try:
        with zipfile.ZipFile(path) as archive:
            architecture = json.loads(archive.read("config.json"))
            weights_bytes = archive.read("model.weights.h5")
        layer_entries = architecture["config"]["layers"]
        class_names = [entry["class_name"] for entry in layer_entries]
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError):
        raise TextgenError(f"{path} is not a readable Keras model archive (corrupt or partial?)") from None
    unknown = sorted(set(class_names) - KNOWN_LAYERS)
    if unknown:
        raise TextgenError(f"{path} contains layers textgen does not build: {', '.join(unknown)}")
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as weights:
            layers = [
                KerasLayer(entry["class_name"], entry["config"], _collect_arrays(weights["layers"][name]))
                for entry, name in zip(layer_entries, _weights_group_names(class_names))
            ]
            global_step = _optimizer_iterations(weights)
    except (OSError, KeyError, ValueError) as error:
        raise TextgenError(f"{path} has unreadable weights ({error})") from None
    return layers, global_step


def _optimizer_iterations(weights):
    """Optimizer steps taken: the optimizer's first variable (its ``iterations`` counter)."""
    group = weights.get("optimizer")
    while group is not None and "vars" in group and len(group["vars"]) == 0 and "inner_optimizer" in group:
        group = group["inner_optimizer"]  # a LossScaleOptimizer wraps the real one
    if group is None or "vars" not in group or "0" not in group["vars"]:
        return 0
    return int(group["vars"]["0"][()])


def _backup_step(directory):
    path = Path(directory) / BACKUP_FILE
    state = _read_json(path) if path.is_file() else {}
    return int(state.get("global_step", 0)) if isinstance(state, dict) else 0


def describe(saved_model):
    """Everything ``textgen info`` reports, as one JSON-ready dict."""
    layers, global_step = read_keras_archive(saved_model.model_path)
    return {
        "directory": str(saved_model.directory),
        "model": saved_model.model.to_dict(),
        "tokenizer": {**saved_model.tokenizer_config.to_dict(), "vocabulary_size": saved_model.tokenizer.vocabulary_size},
        "train": saved_model.train.to_dict(),
        "corpus": saved_model.corpus,
        "from": saved_model.base,
        "parameters": int(sum(array.size for layer in layers for array in layer.weights)),
        # Steps trained in all runs together: the backup is written last, the best model maybe earlier.
        "global_step": max(global_step, _backup_step(saved_model.directory)),
        "metrics": saved_model.metrics(),
        "versions": saved_model.versions,
    }
