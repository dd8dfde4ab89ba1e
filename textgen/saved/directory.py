"""Where model directories live: their names, a new run's directory, the newest one.

A new run writes into its directory inside ``new_model_directory``, which
leaves nothing behind if the run fails before it saved a model, and keeps the
model it replaces (``--overwrite``) until the new one is whole.
"""

import contextlib
import os
import re
import shutil
from pathlib import Path

from textgen.errors import TextgenError
from textgen.saved.layout import MODEL_FILE, SAVED_MODELS_DIRECTORY

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_model_name(name):
    """A model name is one plain path component: letters, digits, '.', '_' and '-'."""
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
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
    replaced = directory.with_name(f".{directory.name}.replaced")
    if directory.exists():
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(directory, replaced)
    directory.mkdir(parents=True)
    try:
        yield directory
    except BaseException:
        if not (directory / MODEL_FILE).exists():
            shutil.rmtree(directory, ignore_errors=True)
            if replaced.exists():
                os.replace(replaced, directory)
        raise
    finally:
        if replaced.exists() and (directory / MODEL_FILE).exists():
            shutil.rmtree(replaced, ignore_errors=True)


def newest_model_directory(root=SAVED_MODELS_DIRECTORY):
    """The model directory under ``root`` whose weights were saved last."""
    root = Path(root)
    candidates = [path.parent for path in root.glob(f"*/{MODEL_FILE}")] if root.is_dir() else []
    if not candidates:
        raise TextgenError(f"no saved model under {root.resolve()}; train one with `textgen train CORPUS`")
    return max(candidates, key=lambda directory: (directory / MODEL_FILE).stat().st_mtime)
