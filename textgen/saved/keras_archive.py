"""Reading ``model.keras`` safely: arrays out, no code run, every shape checked.

A Keras 3 archive is a zip holding ``config.json`` (the layers) and
``model.weights.h5`` (their arrays, and the optimizer's). textgen reads it as
that zip and HDF5 file and never calls ``keras.models.load_model``, whose safe
mode has been bypassed more than once: a model directory from a stranger
cannot run code here. Only the layers textgen builds are accepted, and
``Network`` checks that their arrays fit together before any engine uses them.
"""

import dataclasses
import io
import json
import re
import zipfile

import numpy as np

from textgen.cells import CELLS_BY_KERAS_LAYER
from textgen.errors import TextgenError

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


def _collect_arrays(group):
    """A layer group's arrays in Keras order: vars/0, vars/1, ... (an RNN's live under cell/)."""
    if "cell" in group:
        group = group["cell"]
    variables = group.get("vars", {})
    return [np.asarray(variables[str(index)][()]) for index in range(len(variables))]


def _optimizer_iterations(weights):
    """Optimizer steps taken: the optimizer's first variable (its ``iterations`` counter)."""
    group = weights.get("optimizer")
    while group is not None and "vars" in group and len(group["vars"]) == 0 and "inner_optimizer" in group:
        group = group["inner_optimizer"]  # a LossScaleOptimizer wraps the real one
    if group is None or "vars" not in group or "0" not in group["vars"]:
        return 0
    return int(group["vars"]["0"][()])


def read_keras_archive(path):
    """Layers (in order, with weights) and the optimizer step count of a ``model.keras`` file."""
    import h5py  # numpy-only HDF5 reader; far lighter than TensorFlow

    try:
        with zipfile.ZipFile(path) as archive:
            architecture = json.loads(archive.read("config.json"))
            weights_bytes = archive.read("model.weights.h5")
        class_names = [entry["class_name"] for entry in architecture["config"]["layers"]]
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError):
        raise TextgenError(f"{path} is not a readable Keras model archive (corrupt or partial?)") from None
    unknown = sorted(set(map(str, class_names)) - KNOWN_LAYERS)
    if unknown:
        raise TextgenError(f"{path} contains layers textgen does not build: {', '.join(unknown)}")
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as weights:
            layers = [
                KerasLayer(class_name, _collect_arrays(weights["layers"][name]))
                for class_name, name in zip(class_names, _weights_group_names(class_names))
            ]
            global_step = _optimizer_iterations(weights)
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise TextgenError(f"{path} has unreadable weights ({error})") from None
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
