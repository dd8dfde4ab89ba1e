"""One way to open a file: regular files only, no symbolic link followed out of the directory that owns it.

Every file textgen reads or writes in a model directory, the token cache, a
lock or a corpus directory goes through ``open_descriptor``:

  * O_NOFOLLOW: the file itself may not be a symbolic link (a model directory's
    ``model.keras -> ~/.ssh/id_rsa`` is refused, not read);
  * ``within``: the directories above it may not lead out of the directory that
    owns it (a model directory whose ``logs`` points elsewhere is refused);
  * O_NONBLOCK, then ``fstat``: a FIFO or a device is refused without waiting
    for a writer (opening a FIFO for reading would block forever);
  * reads grow with what the file really holds, up to a cap (limits.py), so a
    file that lies about its size cannot make textgen allocate the cap.

A path the user names on the command line (a corpus file) may be a symbolic
link: they chose it (``follow=True``); it must still be a regular file.
"""

import errno
import os
import stat
from pathlib import Path

from textgen.errors import TextgenError
from textgen.limits import READ_PIECE_BYTES


def check_within(path, root):
    """Refuse ``path`` where its directory, symbolic links resolved, is not ``root`` or below it."""
    real_root = os.path.realpath(root)
    parent = os.path.realpath(Path(path).parent)
    if parent != real_root and not parent.startswith(real_root.rstrip(os.sep) + os.sep):
        raise TextgenError(f"{path} is refused: a symbolic link leads it out of {root}")


def check_directory_within(directory, root):
    """Refuse a directory (existing or to be made) that a symbolic link leads out of ``root``."""
    check_within(Path(directory) / "file", root)


def open_descriptor(path, flags=os.O_RDONLY, *, within=None, follow=False, mode=0o666):
    """An open file descriptor of the regular file ``path``; a ``TextgenError`` in one line for anything else."""
    if within is not None:
        check_within(path, within)
    flags |= os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags, mode)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:
            raise TextgenError(f"{path} is a symbolic link; textgen opens only a directory's own files") from None
        if error.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise TextgenError(f"{path} is not a regular file") from None
        raise TextgenError(f"cannot open {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise TextgenError(f"{path} is not a regular file")
    os.set_blocking(descriptor, True)  # a regular file: reads and writes complete as usual
    return descriptor


def open_file(path, mode="rb", *, within=None, follow=False):
    """``open()`` for a regular file, through ``open_descriptor``; ``mode`` "rb", "r", "wb", "w" or "ab"."""
    flags = os.O_RDONLY if "r" in mode else os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    descriptor = open_descriptor(path, flags, within=within, follow=follow)
    if "b" in mode:  # unbuffered for reading: zipfile and h5py seek and read their own pieces
        return os.fdopen(descriptor, mode, buffering=0 if "r" in mode else -1)
    return os.fdopen(descriptor, mode, encoding="utf-8")


def read_bounded(path, max_bytes, *, within=None, follow=False):
    """The whole of the regular file ``path``, refused in one line past ``max_bytes``.

    Read piece by piece: memory grows with what is there (a sparse or lying file is
    refused once it has shown more than the cap, never allocated up front).
    """
    descriptor = open_descriptor(path, within=within, follow=follow)
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        size = os.fstat(descriptor).st_size
        if size > max_bytes:
            raise TextgenError(f"{path} is refused: {size:,} bytes, more than {max_bytes:,}")
        data = bytearray()
        while len(data) <= max_bytes:
            # Ask for what fstat says is left (and a little more, to see the end), a piece at a time.
            wanted = max(size - len(data), 1 << 16)
            piece = handle.read(min(READ_PIECE_BYTES, wanted, max_bytes + 1 - len(data)))
            if not piece:
                return bytes(data)
            data += piece
    raise TextgenError(f"{path} is refused: more than {max_bytes:,} bytes")
