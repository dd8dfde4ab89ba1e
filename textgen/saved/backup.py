"""The resumable backup on disk: backup.json and the weights file it names.

What goes into a backup and how a run resumes from it is training's business
(training/checkpoints.py); this module only writes and reads the pair so that
a kill at any moment leaves a consistent one.
"""

import dataclasses
import math
import os
from pathlib import Path

from textgen.errors import TextgenError
from textgen.limits import MAX_GLOBAL_STEP
from textgen.safe_files import open_file
from textgen.saved.atomic import atomic_write, read_json, write_json
from textgen.saved.layout import BACKUP_FILE, BACKUP_WEIGHTS, backup_weights_name


@dataclasses.dataclass(frozen=True)
class BackupRecord:
    """backup.json: where a run stands (training/checkpoints.RunState is made from it) and its weights file.

    The defaults are what an older or shorter backup.json means by leaving a field out.
    """

    global_step: int  # optimizer steps done: where the data stream resumes
    best_loss: float = math.inf  # the saved model's loss
    history: list = dataclasses.field(default_factory=list)  # every epoch's record, of every run (metrics.json)
    run: int = 0  # how many runs (a new one and its resumes) trained this model
    schedule_progress: float = 0.0  # 0 = the learning-rate schedule's start, 1 = its end
    weights: str = None  # the weights file beside it (write_backup names it)


def write_backup(directory, save_weights, record, *, expected_bytes=None):
    """Weights (with optimizer state) first, then backup.json pointing at them.

    backup.json switches atomically from the previous complete weights file to
    the new one, then the previous file is deleted.

    Args:
        directory: the model directory.
        save_weights: writes the weights to the path it is given (``model.save_weights``).
        record: a ``BackupRecord`` (its ``weights`` is set here).
        expected_bytes: about how large the weights file will be (checked against the free space).
    """
    directory = Path(directory)
    weights = backup_weights_name(record.global_step)
    atomic_write(directory / weights, save_weights, expected_bytes=expected_bytes)
    previous = read_backup(directory) if (directory / BACKUP_FILE).exists() else None
    write_json(directory / BACKUP_FILE, dataclasses.asdict(dataclasses.replace(record, weights=weights)))
    if previous and previous.weights != weights:
        (directory / previous.weights).unlink(missing_ok=True)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


# What every epoch record holds (training/callbacks.EpochLog writes them; info reads them).
RECORD_KEYS = ("epoch", "global_step", "loss", "bits_per_character", "characters_per_second")


def check_history(records, path):
    """Epoch records (metrics.json, a backup's history): a list of {name: number}, counts as counts."""
    if not isinstance(records, list):
        raise TextgenError(f"{path} is malformed: the epochs' metrics are not a list")
    for record in records:
        if not isinstance(record, dict) or not all(
            isinstance(key, str) and (_is_number(value) or isinstance(value, bool)) for key, value in record.items()
        ):
            raise TextgenError(f"{path} is malformed: an epoch's metrics are not names and numbers")
        held_out = ("val_loss", "val_bits_per_character") if "val_loss" in record else ()
        if not all(key in record for key in RECORD_KEYS + held_out):
            raise TextgenError(f"{path} is malformed: an epoch's record lacks one of {', '.join(RECORD_KEYS)}")
        if not all(_is_count(record.get(key, 1)) for key in ("run", "epoch", "global_step", "steps")):
            raise TextgenError(f"{path} is malformed: an epoch's run, epoch or step is not a count")
    return records


def read_backup(directory):
    """The ``BackupRecord`` written by ``write_backup``, every field checked; one line when there is none."""
    path = Path(directory) / BACKUP_FILE
    if not path.is_file():
        raise TextgenError(
            f"no training backup in {directory} to resume from (it is written at the end of a run "
            f"and every --checkpoint-every steps)"
        )
    state = read_json(path)
    if not isinstance(state, dict):
        raise TextgenError(f"{path} is malformed: not an object")
    weights = state.get("weights", "")
    if (
        not isinstance(weights, str)
        or not BACKUP_WEIGHTS.fullmatch(weights)
        or not (Path(directory) / weights).is_file()
    ):
        raise TextgenError(f"{path} names no backup weights file that exists")
    if not _is_count(state.get("global_step")):
        raise TextgenError(f"{path} has no valid global_step")
    if state["global_step"] > MAX_GLOBAL_STEP:
        raise TextgenError(f"{path} is refused: its global_step {state['global_step']:,} is past {MAX_GLOBAL_STEP:,}")
    fields = {field.name for field in dataclasses.fields(BackupRecord)}
    record = BackupRecord(**{key: value for key, value in state.items() if key in fields})
    if not (_is_number(record.best_loss) and not math.isnan(record.best_loss) and _is_count(record.run)):
        raise TextgenError(f"{path} is malformed: best_loss or run is not a number")
    if not (_is_number(record.schedule_progress) and 0 <= record.schedule_progress <= 1):
        raise TextgenError(f"{path} is malformed: schedule_progress is not between 0 and 1")
    check_history(record.history, path)
    return record


def check_backup_weights(directory, record, expected):
    """The backup's weights file is safe to hand to Keras: plain arrays, none larger than ``expected`` allows."""
    import h5py  # numpy-only HDF5 reader, loaded only when a backup is read

    from textgen.saved.keras_archive import check_parameters, check_weights_file, weights_file_limit

    path = Path(directory) / record.weights
    check_parameters(expected, Path(directory) / "config.json")
    with open_file(path, "rb") as handle:  # h5py reads through it: only the parts it walks
        size, limit = os.fstat(handle.fileno()).st_size, weights_file_limit(expected)
        if size > limit:
            raise TextgenError(f"{path} is refused: {size:,} bytes, more than {limit:,}")
        try:
            with h5py.File(handle, "r") as file:
                check_weights_file(file, expected, source=path)
        except TextgenError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, ArithmeticError):  # h5py on damaged bytes
            raise TextgenError(f"{path} is not a readable weights file (corrupt or partial?)") from None


def backup_global_step(directory):
    """The global step of the directory's backup, or 0 when it has none."""
    path = Path(directory) / BACKUP_FILE
    return read_backup(directory).global_step if path.is_file() else 0
