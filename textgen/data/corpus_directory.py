"""The text files of a corpus directory: walked in order, binary and hidden files left out, links checked.

A symbolic link inside the directory that leads out of it is skipped unless the
user asks (``--follow-links``): a cloned repository's ``notes.txt -> ~/secret``
must not be trained on, and named in the model's config.json, unasked.
"""

import os
from pathlib import Path

from textgen.errors import TextgenError
from textgen.safe_files import open_file

# Directories never worth reading as training text.
_SKIPPED_DIRECTORIES = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox"}


def _looks_binary(path):
    """A cheap sniff used to skip binary files inside a directory."""
    try:
        with open_file(path, "rb", follow=True) as handle:  # a regular file, never a FIFO
            return b"\x00" in handle.read(8192)
    except (OSError, TextgenError):
        return True


def _leaves(path, root):
    """True where a symbolic link at ``path`` (inside ``root``) leads out of ``root``."""
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) != real_root


def directory_files(directory, *, follow_links=False, skipped=None):
    """The text files below ``directory``, in order; a symbolic link leading out of it is skipped
    (appended to ``skipped``) unless ``follow_links``: a cloned repository's ``notes.txt -> ~/secret``
    must not end up in a model, and in its config.json."""
    files = []
    # followlinks=False: linked directories are not descended, so a symlink loop cannot trap the walk.
    for root, directories, names in os.walk(directory, followlinks=False):
        directories[:] = sorted(d for d in directories if d not in _SKIPPED_DIRECTORIES and not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():  # is_file: a regular file (or a link to one)
                continue
            if path.is_symlink() and not follow_links and _leaves(path, directory):
                if skipped is not None:
                    skipped.append(path)
                continue
            if path.stat().st_size > 0 and not _looks_binary(path):
                files.append(path)
    if not files:
        raise TextgenError(f"directory {directory} has no text files")
    return files


def skipped_links_line(skipped):
    """The one line that lists the symbolic links a corpus directory's walk skipped."""
    shown = ", ".join(str(path) for path in skipped[:5])
    shown += f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return (
        f"note: skipped {len(skipped)} symbolic link(s) leading out of the corpus directory: {shown} "
        "(--follow-links reads them)"
    )
