"""The resumable backup on disk: backup.json and the weights file it names.

What goes into a backup and how a run resumes from it is training's business
(training/checkpoints.py); this module only writes and reads the pair so that
a kill at any moment leaves a consistent one.
"""

from pathlib import Path

from textgen.errors import TextgenError
from textgen.saved.atomic import atomic_write, read_json, write_json
from textgen.saved.layout import BACKUP_FILE, BACKUP_WEIGHTS, backup_weights_name


def write_backup(directory, save_weights, state):
    """Weights (with optimizer state) first, then backup.json pointing at them.

    backup.json switches atomically from the previous complete weights file to
    the new one, then the previous file is deleted.

    Args:
        directory: the model directory.
        save_weights: writes the weights to the path it is given (``model.save_weights``).
        state: a JSON-ready dict with at least ``global_step``.
    """
    directory = Path(directory)
    weights = backup_weights_name(state["global_step"])
    atomic_write(directory / weights, save_weights)
    previous = read_backup(directory) if (directory / BACKUP_FILE).exists() else None
    write_json(directory / BACKUP_FILE, {**state, "weights": weights})
    if previous and previous["weights"] != weights:
        (directory / previous["weights"]).unlink(missing_ok=True)


def read_backup(directory):
    """The state written by ``write_backup``; a clear error when there is none to resume."""
    path = Path(directory) / BACKUP_FILE
    if not path.is_file():
        raise TextgenError(
            f"no training backup in {directory} to resume from (it is written at the end of a run "
            f"and every --checkpoint-every steps)"
        )
    state = read_json(path)
    weights = state.get("weights", "") if isinstance(state, dict) else ""
    if not isinstance(weights, str) or not BACKUP_WEIGHTS.match(weights) or not (Path(directory) / weights).is_file():
        raise TextgenError(f"{path} names no backup weights file that exists")
    if not isinstance(state.get("global_step"), int) or state["global_step"] < 0:
        raise TextgenError(f"{path} has no valid global_step")
    return state


def backup_global_step(directory):
    """The global step of the directory's backup, or 0 when it has none."""
    path = Path(directory) / BACKUP_FILE
    state = read_json(path) if path.is_file() else {}
    step = state.get("global_step", 0) if isinstance(state, dict) else 0
    return step if isinstance(step, int) else 0
