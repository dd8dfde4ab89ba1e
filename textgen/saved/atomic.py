"""Writing files whole or not at all, and reading JSON with one clear error.

Every file of a model directory is written to a temporary name beside it and
renamed over the real one, so a reader (or a run killed mid-write) never sees
half a file. Temporary names start with a dot and end with what Keras insists
on (``.keras``, ``.weights.h5``) or ``.tmp``; ``remove_temporary_files``
cleans up what a killed process left.
"""

import json
import os
import secrets
import shutil
from pathlib import Path

from textgen.errors import TextgenError
from textgen.limits import MAX_JSON_BYTES
from textgen.safe_files import open_file, read_bounded

_KERAS_SUFFIXES = (".weights.h5", ".keras")


def _new_temporary_file(path):
    """An empty, new file beside ``path``: ".NAME-<random><suffix>"."""
    suffix = next((ending for ending in _KERAS_SUFFIXES if path.name.endswith(ending)), path.suffix + ".tmp")
    while True:
        temporary = path.parent / f".{path.name}-{secrets.token_hex(6)}{suffix}"
        try:
            # O_EXCL: never someone else's file. Mode 0o666 lets the user's umask
            # decide the permissions, as for any file they create.
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return temporary
        except FileExistsError:
            continue


# Added to a file's expected size by every caller that checks the free space: HDF5's and zip's bookkeeping.
FREE_SPACE_MARGIN_BYTES = 1 << 20


def check_free_space(path, needed_bytes):
    """Refuse to start writing ``needed_bytes`` beside ``path`` where the disk has less free.

    A library that runs out of space mid-write may fail badly (HDF5 has crashed
    the process outright), so the big files are checked before they are begun.
    """
    free = shutil.disk_usage(Path(path).parent).free
    if free < needed_bytes:
        raise TextgenError(
            f"no space left on the device while writing {path}: it needs about {needed_bytes:,} bytes (the file "
            f"and a margin of {FREE_SPACE_MARGIN_BYTES:,}), {free:,} are free; what was saved before is intact"
        )


def atomic_write(path, write, *, expected_bytes=None):
    """Call ``write(temporary_path)``, then rename over ``path``: readers never see half a file.

    ``expected_bytes``: about how large the file will be, checked against the free space first.
    """
    path = Path(path)
    if expected_bytes is not None:
        check_free_space(path, expected_bytes)
    temporary = _new_temporary_file(path)
    try:
        write(str(temporary))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path, text):
    def write(temporary):
        with open_file(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def write_json(path, data, *, indent=2):
    write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def read_json(path):
    """A JSON file's content; a ``TextgenError`` naming the file if it is unreadable, too large or not JSON."""
    data = read_bounded(path, MAX_JSON_BYTES)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: [[[[...]]]] nested deeper than Python goes
        raise TextgenError(f"{path} is not valid JSON (a corrupt or partial model directory?)") from None


def remove_temporary_files(directory):
    """Delete temporary files a killed process left behind (see ``atomic_write``)."""
    for path in Path(directory).glob(".*-*"):
        if path.is_file() and path.name.endswith((".tmp",) + _KERAS_SUFFIXES):
            path.unlink()
