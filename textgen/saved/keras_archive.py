"""Reading ``model.keras`` safely: arrays out, no code run, every size and shape checked first.

A Keras 3 archive is a zip holding ``config.json`` (the layers) and
``model.weights.h5`` (their arrays, and the optimizer's). textgen reads it as
that zip and HDF5 file and never calls ``keras.models.load_model``, whose safe
mode has been bypassed more than once: a model directory from a stranger
cannot run code here. Only the layers textgen builds are accepted, and
``Network`` checks that their arrays fit together before any engine uses them.
"""

import dataclasses
import json
import os
import re
import zipfile

import h5py  # numpy-only HDF5 reader; far lighter than TensorFlow
import numpy as np

from textgen.cells import CELLS_BY_KERAS_LAYER
from textgen.errors import TextgenError
from textgen.limits import MAX_PARAMETERS, MAX_WEIGHTS_FILE_BYTES
from textgen.safe_files import open_file
from textgen.saved.hdf5_guard import check_hdf5_file, read_checked_dataset

# The only Keras layers a textgen model is built from (model.py); anything else
# in an archive means it is not ours, and it is refused.
KNOWN_LAYERS = {"InputLayer", "Embedding", "Dropout", "Dense"} | set(CELLS_BY_KERAS_LAYER)


@dataclasses.dataclass(frozen=True)
class KerasLayer:
    """One layer of a saved Keras model: its class name and its weight arrays, in Keras's order."""

    class_name: str
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


# Sizes refused before they are read: the architecture is a few KB; the weights file holds each
# weight and Adam's two moments (3x) plus HDF5's bookkeeping, and never more than limits.py allows.
MAX_ARCHITECTURE_BYTES = 1 << 20
WEIGHTS_FILE_SLACK_BYTES = 1 << 20


def weights_file_limit(expected):
    """The most bytes a weights file of ``expected`` may hold: its arrays 3x (Adam), capped absolutely."""
    return min(3 * weight_bytes(expected)[1] + WEIGHTS_FILE_SLACK_BYTES, MAX_WEIGHTS_FILE_BYTES)


def check_parameters(expected, source):
    """Refuse a network (described by ``source``) larger than limits.MAX_PARAMETERS, before anything is read."""
    parameters = sum(int(np.prod(shape)) for _, shapes in expected for shape in shapes)
    if parameters > MAX_PARAMETERS:
        raise TextgenError(
            f"{source} describes a network of {parameters:,} parameters; textgen reads at most {MAX_PARAMETERS:,}"
        )


def expected_weights(model_config, vocabulary_size):
    """[(Keras class name, [weight shapes])] of the layers with weights, in order, for a config."""
    from textgen.cells import CELLS

    kind = CELLS[model_config.cell]
    units, columns = model_config.units, kind.gates * model_config.units
    bias = (columns,) if kind.bias_rows == 1 else (kind.bias_rows, columns)
    layers = [("Embedding", [(vocabulary_size, model_config.embedding_dim)])]
    width = model_config.embedding_dim
    for _ in range(model_config.layers):
        layers.append((kind.keras_layer, [(width, columns), (units, columns), bias]))
        width = units
    layers.append(("Dense", [(units, vocabulary_size), (vocabulary_size,)]))
    return layers


def weight_bytes(expected):
    """(the largest array's bytes, all arrays' bytes) of ``expected_weights``, float32."""
    sizes = [4 * int(np.prod(shape)) for _, shapes in expected for shape in shapes]
    return max(sizes), sum(sizes)


def _read_member(archive, name, limit, path):
    """A zip member's bytes, never more than ``limit`` (the header's size may lie)."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise TextgenError(f"{path} is refused: its {name} is {info.file_size:,} bytes, more than {limit:,}")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise TextgenError(f"{path} is refused: its {name} is more than {limit:,} bytes")
    return data


def _collect_arrays(group, shapes, *, source, layer):
    """A layer group's arrays in Keras order: vars/0, vars/1, ... (an RNN's live under cell/), shapes checked."""
    if "cell" in group:
        group = group["cell"]
    variables = group.get("vars", {})
    if len(variables) != len(shapes):
        raise TextgenError(f"{source} has malformed weights: {layer} has {len(variables)} arrays, not {len(shapes)}")
    return [
        read_checked_dataset(variables.get(str(index)), shape, source=source, what=f"{layer} array {index}")
        for index, shape in enumerate(shapes)
    ]


def _optimizer_iterations(weights):
    """Optimizer steps taken: the optimizer's first variable (its ``iterations`` counter)."""
    group = weights.get("optimizer")
    while isinstance(group, h5py.Group) and "vars" in group and len(group["vars"]) == 0 and "inner_optimizer" in group:
        group = group["inner_optimizer"]  # a LossScaleOptimizer wraps the real one
    if not isinstance(group, h5py.Group) or "vars" not in group or "0" not in group["vars"]:
        return 0
    counter = group["vars"]["0"]
    if not isinstance(counter, h5py.Dataset) or counter.shape != () or counter.dtype.kind not in "iuf":
        return 0
    steps = counter[()]
    return int(steps) if np.isfinite(steps) and 0 <= steps < 2**62 else 0


def check_weights_file(file, expected, *, source):
    """Check an open HDF5 weights file (model.weights.h5 or a backup) is safe to read for ``expected``."""
    largest, total = weight_bytes(expected)
    # Optimizer scalars may be 8 bytes; the moments are the weights' shapes.
    check_hdf5_file(file, source=source, max_dataset_bytes=max(largest, 8), max_total_bytes=3 * total + 4096)


def read_keras_archive(path, expected):
    """Layers (in order, with weights) and the optimizer step count of a ``model.keras`` file.

    ``expected`` (``expected_weights``) fixes the layers and every array's shape:
    nothing is read that does not match, and no size is trusted before it is checked.
    """
    check_parameters(expected, path)
    weights_limit = weights_file_limit(expected)
    with open_file(path, "rb") as handle:
        size, limit = os.fstat(handle.fileno()).st_size, weights_limit + 2 * MAX_ARCHITECTURE_BYTES
        if size > limit:
            raise TextgenError(f"{path} is refused: {size:,} bytes, more than a model of its config.json holds")
        try:
            archive = zipfile.ZipFile(handle)
            architecture = json.loads(_read_member(archive, "config.json", MAX_ARCHITECTURE_BYTES, path))
            weights_member = _stored_member(archive, "model.weights.h5", weights_limit, path)
            class_names = [str(entry["class_name"]) for entry in architecture["config"]["layers"]]
        except TextgenError:
            raise
        except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError, RuntimeError, EOFError):
            raise TextgenError(f"{path} is not a readable Keras model archive (corrupt or partial?)") from None
        _check_layer_names(class_names, expected, path)
        return _read_weights(archive, weights_member, class_names, expected, path)


def _stored_member(archive, name, limit, path):
    """The archive's ``name``, uncompressed (as Keras writes it) and within ``limit``: its ZipInfo."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise TextgenError(f"{path} is not a Keras model archive: it has no {name}") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise TextgenError(f"{path} is refused: its {name} is compressed, and Keras stores it as it is")
    if info.file_size > limit:
        raise TextgenError(f"{path} is refused: its {name} is {info.file_size:,} bytes, more than {limit:,}")
    return info


def _check_layer_names(class_names, expected, path):
    unknown = sorted(set(class_names) - KNOWN_LAYERS)
    if unknown:
        raise TextgenError(f"{path} contains layers textgen does not build: {', '.join(unknown)}")
    weighted = [name for name in class_names if name not in ("InputLayer", "Dropout")]
    if weighted != [class_name for class_name, _ in expected]:
        raise TextgenError(
            f"{path} holds layers {', '.join(weighted)}; its config.json describes {', '.join(c for c, _ in expected)}"
        )


def _read_weights(archive, member, class_names, expected, path):
    """(layers, optimizer steps) from the weights member, every object checked before it is read.

    h5py reads the member through the open archive, only the parts it is asked
    for: memory follows the checked arrays, not what the file claims to hold.
    """
    shapes = iter(shapes for _, shapes in expected)
    try:
        with archive.open(member) as weights_file, h5py.File(weights_file, "r") as weights:
            check_weights_file(weights, expected, source=path)
            layers_group = weights.get("layers")
            layers = []
            for class_name, name in zip(class_names, _weights_group_names(class_names)):
                group = layers_group.get(name) if isinstance(layers_group, h5py.Group) else None
                if class_name in ("InputLayer", "Dropout"):
                    layers.append(KerasLayer(class_name, []))
                    continue
                if not isinstance(group, h5py.Group):
                    raise TextgenError(f"{path} has malformed weights: no arrays for layer {name}")
                layers.append(KerasLayer(class_name, _collect_arrays(group, next(shapes), source=path, layer=name)))
            global_step = _optimizer_iterations(weights)
    except TextgenError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, ArithmeticError, zipfile.BadZipFile) as error:
        raise TextgenError(f"{path} has unreadable weights ({error})") from None  # h5py or zipfile on damaged bytes
    return layers, global_step


@dataclasses.dataclass(frozen=True)
class Network:
    """A textgen model's arrays by role, float32: embedding -> recurrent layers -> output.

    Built from an archive's layers or from a live Keras model; either way the
    shapes are checked to chain (the engines trust them).
    """

    embedding: np.ndarray  # (vocabulary, embedding_dim)
    recurrent: tuple  # ((CellKind, [kernel, recurrent_kernel, bias]), ...) in layer order
    output_kernel: np.ndarray  # (units, vocabulary)
    output_bias: np.ndarray  # (vocabulary,)

    @property
    def vocabulary_size(self):
        return self.output_kernel.shape[1]

    @property
    def arrays(self):
        """Every weight array, embedding first."""
        recurrent = [array for _, layer_arrays in self.recurrent for array in layer_arrays]
        return [self.embedding, *recurrent, self.output_kernel, self.output_bias]

    @classmethod
    def from_layers(cls, layers, *, source="the model"):
        """The network of ``KerasLayer``s (InputLayer and Dropout hold nothing and are passed over)."""
        embedding, recurrent, output = [], [], []
        for layer in layers:
            try:
                arrays = [np.asarray(array, dtype=np.float32) for array in layer.weights]
            except (TypeError, ValueError):
                raise TextgenError(f"{source} has weights that are not numbers ({layer.class_name})") from None
            if layer.class_name == "Embedding":
                embedding.append(arrays)
            elif layer.class_name in CELLS_BY_KERAS_LAYER:
                recurrent.append((CELLS_BY_KERAS_LAYER[layer.class_name], arrays))
            elif layer.class_name == "Dense":
                output.append(arrays)
        if len(embedding) != 1 or len(output) != 1 or not recurrent:
            raise TextgenError(f"{source} does not have one embedding, recurrent layers and one output layer")
        if len(embedding[0]) != 1 or len(output[0]) != 2:
            raise TextgenError(
                f"{source} has malformed weights: the embedding or the output layer has the wrong arrays"
            )
        network = cls(embedding[0][0], tuple(recurrent), *output[0])
        network._check_shapes(source)
        return network

    @classmethod
    def from_keras_model(cls, model):
        """The network of a live Keras model (during training), from its current weights."""
        return cls.from_layers([KerasLayer(type(layer).__name__, layer.get_weights()) for layer in model.layers])

    def _check_shapes(self, source):
        def require(condition, what):
            if not condition:
                raise TextgenError(f"{source} has malformed weights: {what}")

        require(
            self.embedding.ndim == 2 and self.output_kernel.ndim == 2 and self.output_bias.ndim == 1,
            "the embedding or the output layer has arrays of the wrong rank",
        )
        vocabulary_size, width = self.embedding.shape  # each layer's input width, from the embedding on
        require(
            self.output_kernel.shape[1] == vocabulary_size == self.output_bias.shape[0] > 0,
            "the embedding and the output layer disagree on the vocabulary size",
        )
        for index, (kind, arrays) in enumerate(self.recurrent, start=1):
            require(len(arrays) == 3, f"recurrent layer {index} does not have 3 arrays")
            kernel, recurrent_kernel, bias = arrays
            units = recurrent_kernel.shape[0] if recurrent_kernel.ndim == 2 else 0
            columns = kind.gates * units  # (input, gates * units) kernels, gate blocks side by side
            bias_shape = (columns,) if kind.bias_rows == 1 else (kind.bias_rows, columns)
            require(
                units > 0
                and kernel.shape == (width, columns)
                and recurrent_kernel.shape == (units, columns)
                and bias.shape == bias_shape,
                f"recurrent layer {index} ({kind.keras_layer}) has wrong shapes",
            )
            width = units
        require(self.output_kernel.shape[0] == width, "the output layer does not fit the last recurrent layer")
        require(all(np.isfinite(array).all() for array in self.arrays), "NaN or infinite values")
