"""An HDF5 file from anywhere, checked before any of its arrays is read.

HDF5 can do much more than hold arrays, and a weights file from a stranger
may use all of it: a dataset can keep its bytes in *another file* (external
storage: ``/etc/passwd`` read as a bias), be *virtual* (assembled from other
files), be compressed a thousandfold (a gzip bomb), or declare a shape of
terabytes that HDF5 fills with a fill value on read; a link can point into
another file or back up the tree (a cycle). Keras writes none of these: plain
contiguous datasets of numbers in a tree of groups. ``check_hdf5_file`` walks
the whole file and refuses anything else, and every dataset larger than the
caller's cap, before the caller reads one array (or hands the file to Keras).
"""

import h5py
import numpy as np

from textgen.errors import TextgenError

# A textgen weights file holds a few dozen objects a few groups deep.
MAX_OBJECTS = 10_000
MAX_DEPTH = 16
_PLAIN_LAYOUTS = (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED)


def _refuse(source, what):
    raise TextgenError(f"{source} is refused: {what} (textgen reads only weights files as Keras writes them)")


def _check_dataset(dataset, name, source, max_dataset_bytes):
    plist = dataset.id.get_create_plist()
    if plist.get_external_count():
        _refuse(source, f"dataset {name} keeps its data in another file")
    if plist.get_layout() not in _PLAIN_LAYOUTS:
        _refuse(source, f"dataset {name} is virtual (made of other files)")
    if plist.get_nfilters():
        _refuse(source, f"dataset {name} is compressed or filtered")
    if dataset.shape is None or dataset.dtype.kind not in "fiub" or dataset.dtype.itemsize > 8:
        _refuse(source, f"dataset {name} does not hold plain numbers")
    size = int(np.prod(dataset.shape, dtype=np.float64)) * dataset.dtype.itemsize
    if size > max_dataset_bytes:
        _refuse(source, f"dataset {name} declares {size:,} bytes, more than this model's largest array")
    return size


def check_hdf5_file(file, *, source, max_dataset_bytes, max_total_bytes):
    """Walk every link and object of an open ``h5py.File``; a ``TextgenError`` for anything unsafe.

    Args:
        file: an open ``h5py.File`` (or group).
        source: how to name the file in a message.
        max_dataset_bytes: the largest dataset allowed (from the model's config).
        max_total_bytes: the most all datasets together may declare.
    """
    pending = [(file, "/", 0)]
    objects = total = 0
    while pending:
        group, path, depth = pending.pop()
        if depth > MAX_DEPTH:
            _refuse(source, f"groups nest deeper than {MAX_DEPTH} (a cycle?)")
        for name in group:
            objects += 1
            if objects > MAX_OBJECTS:
                _refuse(source, f"more than {MAX_OBJECTS:,} objects")
            child_path = f"{path}{name}"
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):  # soft links and links into other files
                _refuse(source, f"{child_path} is a link ({type(link).__name__})")
            child = group[name]
            if isinstance(child, h5py.Group):
                pending.append((child, child_path + "/", depth + 1))
            elif isinstance(child, h5py.Dataset):
                total += _check_dataset(child, child_path, source, max_dataset_bytes)
                if total > max_total_bytes:
                    _refuse(source, f"its datasets declare more than {max_total_bytes:,} bytes in all")
            else:  # a named datatype, or something newer
                _refuse(source, f"{child_path} is not a group or a dataset")


def read_checked_dataset(dataset, shape, *, source, what):
    """The float32 array of a checked ``dataset`` whose shape must be exactly ``shape``."""
    if not isinstance(dataset, h5py.Dataset):
        raise TextgenError(f"{source} has malformed weights: {what} is not an array")
    if tuple(dataset.shape or ()) != tuple(shape) or dataset.dtype.kind != "f":
        raise TextgenError(
            f"{source} does not fit its config.json and tokenizer.json: {what} is {dataset.dtype} "
            f"{tuple(dataset.shape or ())}, expected float {tuple(shape)}"
        )
    return np.asarray(dataset[()], dtype=np.float32)
