"""One writer per model directory, and a good model never replaced before its successor is whole.

A training run holds an advisory lock (``fcntl.flock`` on ``ROOT/.NAME.lock``)
for as long as it writes ``ROOT/NAME``: a second ``train`` or ``--resume`` of
the same name is refused at once, naming the PID that holds it. Readers
(``sample``, ``info``) never take it: every file is replaced atomically
(atomic.py), so they see a whole old set or a whole new one.

``--overwrite`` of an existing model writes the new run into a hidden sibling,
``ROOT/.NAME.staging``, and swaps it with ``ROOT/NAME`` (one atomic
``renameat2(RENAME_EXCHANGE)`` on Linux) only when the new run has saved its
first complete model. Whatever ends the run before that (an exception, NaN,
a full disk, SIGKILL, a crash in a library) leaves the old model as it was;
the next run of that name removes the abandoned staging directory. After the
swap the staging name becomes a symbolic link to ``NAME``, so files the run
opened or names it already holds (TensorBoard's writers) go on working.
"""

import contextlib
import ctypes
import errno
import os
import shutil
from pathlib import Path

from textgen.errors import TextgenError
from textgen.safe_files import open_descriptor
from textgen.saved.layout import BACKUP_FILE, MODEL_FILE

try:
    import fcntl
except ImportError:  # not a POSIX system: no lock, as before
    fcntl = None


def lock_path(directory):
    return directory.with_name(f".{directory.name}.lock")


def staging_path(directory):
    return directory.with_name(f".{directory.name}.staging")


def aside_path(directory):
    return directory.with_name(f".{directory.name}.replaced")


def _refuse_held(directory, descriptor):
    holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "another process"
    raise TextgenError(
        f"{directory} is being trained by process {holder}; wait for it to finish, or choose another --name"
    )


def check_not_being_trained(directory):
    """Refuse at once, before any work, a directory whose writer lock another run holds."""
    if fcntl is None:
        return
    if not os.path.lexists(lock_path(Path(directory))):  # no lock file: never trained
        return
    descriptor = open_descriptor(lock_path(Path(directory)))  # a symlink or a FIFO is refused, never waited on
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            _refuse_held(directory, descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def writer_lock(directory):
    """Hold ``directory``'s writer lock, or refuse in one line naming the process that holds it."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    # O_CREAT without O_TRUNC: a waiting reader of the PID never sees an empty file it did not cause.
    # Never through a symlink (its target would get our PID) and never a FIFO (opening it would wait).
    descriptor = open_descriptor(lock_path(directory), os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _refuse_held(directory, descriptor)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        _recover(directory)
        yield
    finally:
        os.close(descriptor)  # releases the lock; the file stays (unlinking it would race a newcomer)


def _recover(directory):
    """Under the lock: undo what a killed writer left (its staging directory, a half-done swap)."""
    if not directory.exists() and aside_path(directory).is_dir():
        os.replace(aside_path(directory), directory)  # killed between the two renames of the fallback swap
    for leftover in (staging_path(directory), aside_path(directory)):
        _remove(leftover)


def _remove(path):
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _exchange(first, second):
    """Swap two directories' names atomically (Linux's renameat2); False where the system cannot."""
    try:
        rename = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_current_directory, rename_exchange = -100, 2
    if rename(at_current_directory, os.fsencode(first), at_current_directory, os.fsencode(second), rename_exchange):
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM):  # a file system without the flag
            return False
        raise OSError(code, os.strerror(code), str(first))
    return True


class RunDirectory:
    """Where a training run writes; for ``--overwrite`` a staging sibling until its first model is saved.

    Use as a context manager inside ``writer_lock``. ``path`` is where files go;
    ``directory`` is the model's name as the user knows it.
    """

    def __init__(self, directory, *, resume=False):
        self.directory = Path(directory)
        self.resume = resume
        self.staged = not resume and self.directory.exists()
        self.path = staging_path(self.directory) if self.staged else self.directory
        self.published = not self.staged

    def __enter__(self):
        if not self.resume:
            self.path.mkdir()
        return self

    def model_saved(self):
        """Called after each complete save of model.keras: the first one of a staged run replaces the old model."""
        if self.published:
            return
        if _exchange(self.path, self.directory):
            shutil.rmtree(self.path)  # the old model, which the exchange put here
        else:
            aside = aside_path(self.directory)
            os.replace(self.directory, aside)  # a kill between these two renames is undone by _recover
            os.replace(self.path, self.directory)
            shutil.rmtree(aside)
        # The staging name now leads to the new model: what the run holds by that name still works.
        os.symlink(self.directory.name, self.path)
        self.published = True

    def __exit__(self, kind, error, traceback):
        if self.staged:  # the link to the new model, or a staged run that never saved one: the old model stays
            _remove(self.path)
        elif kind is not None and not self.resume and not (self.directory / MODEL_FILE).exists():
            if not (self.directory / BACKUP_FILE).exists():  # a new run that failed with nothing to resume
                shutil.rmtree(self.directory, ignore_errors=True)
        return False


def check_unfinished_run(directory):
    """A new run may take a directory that holds no model; one with a backup is a run to ``--resume``.

    Returns True when ``directory`` is an unfinished run that saved nothing and may be replaced.
    """
    if (directory / MODEL_FILE).exists():
        return False
    if (directory / BACKUP_FILE).exists():
        raise TextgenError(
            f"{directory} holds an unfinished run with a backup; continue it with --resume, "
            f"or start again with --overwrite"
        )
    return True
