"""Where model directories live: their names, whether a new run may take one, the newest one.

How a run writes its directory (the writer lock, the staged ``--overwrite``):
run_directory.py.
"""

import re
from pathlib import Path

from textgen.errors import TextgenError
from textgen.saved.layout import MODEL_FILE, SAVED_MODELS_DIRECTORY
from textgen.saved.run_directory import check_unfinished_run

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_model_name(name):
    """A model name is one plain path component: letters, digits, '.', '_' and '-'."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):  # match's $ allows a final newline
        raise TextgenError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (max 100)")
    return name


def default_model_name(corpus_name):
    """A valid model name made from a corpus name ("my notes" -> "my_notes")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", corpus_name).strip("._-")[:100]
    return name or "model"


def check_new_model_directory(directory, *, overwrite):
    """Whether a new run may write ``directory`` (it holds the writer lock): an error if not.

    An existing model is replaced only with ``overwrite``; a directory left by a
    run that was killed before it saved anything (no model, no backup) is
    replaced without asking, since there is nothing in it to lose.
    """
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise TextgenError(f"{directory} exists and is not a directory")
    if directory.exists() and not overwrite and not check_unfinished_run(directory):
        raise TextgenError(f"{directory} already exists; pass --overwrite to replace it, or choose another --name")
    return directory


def newest_model_directory(root=SAVED_MODELS_DIRECTORY):
    """The model directory under ``root`` whose weights were saved last."""
    root = Path(root)
    # Hidden directories are a run's staging area (saved/run_directory.py), never a model to pick.
    candidates = [path.parent for path in root.glob(f"*/{MODEL_FILE}") if not path.parent.name.startswith(".")]
    candidates = candidates if root.is_dir() else []
    if not candidates:
        raise TextgenError(f"no saved model under {root.resolve()}; train one with `textgen train CORPUS`")
    return max(candidates, key=lambda directory: (directory / MODEL_FILE).stat().st_mtime)
