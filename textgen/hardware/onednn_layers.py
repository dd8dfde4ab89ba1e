"""The NumPy engine's recurrent layers as oneDNN's fused inference primitives, for batches of streams.

A batch-64 step of a 2x256 char LSTM in NumPy is its matrix products, which run
at about the cores' peak, and between them work on one core: the activations
(84 us a layer on an AMD EPYC Zen 4), the adds and NumPy's cost per call. So
the step took 770-810 us there where its products alone take ~640. oneDNN's RNN
primitive for inference runs one time step of a layer in one call, both
products (its brgemm kernels) and the gate math, on every core: the same step
in 600-635 us, and a whole sampling step 690-730 us against 860-890
(benchmarks/RESULTS.md). The NumPy engine times whole steps both ways at its
first batch and keeps the faster (numpy_engine.py); a single stream stays in
NumPy (one layer at batch 1 took 45-51 us here, a whole NumPy step ~60).
A primitive plans its work for the OpenMP threads there are when it is made, so
every core is asked for before one is made (made on one thread, a step ran 1.8x
slower).

A primitive is made for fixed shapes (1-3 ms each), so ``FusedLayers`` keeps
one ``_Stack`` of primitives per batch size, a multiple of ``ROWS_PER_SIZE``
(a batch of 57 rows runs in the stack of 64), the most recently used
``_MOST_BATCH_SIZES`` of them. Each holds the buffers between its layers; the
kernels, reordered into the layout a primitive picked, are shared by every
batch size that picked the same layout. The numbers are oneDNN's (its own tanh
and logistic, its summation order): logits within ~1e-6 of the NumPy cells'.
"""

import ctypes
import threading
from collections import OrderedDict

import numpy as np

from textgen.hardware.onednn import (
    ANY,
    ARGUMENTS,
    QUERY_ARGUMENT,
    QUERY_SCRATCHPAD,
    Reorder,
    _ExecArgument,
    aligned_empty,
    onednn_status,
)
from textgen.hardware.onednn_rnn import LDGO, LDNC, TNC, create_descriptor, to_onednn_bias

_FORWARD_INFERENCE = 96  # dnnl_forward_inference
# A server's batch size moves through every size as streams come and go, and a new size's stack takes
# ~3.3 ms to make (a step ~0.5; 64 sizes ~0.2 s): stacks are made for multiples of ROWS_PER_SIZE rows,
# and fewer rows padded. Each kept stack holds ~0.6 MB here (2x256 LSTM).
ROWS_PER_SIZE = 8
_MOST_BATCH_SIZES = 64  # 512 rows in multiples of 8
_KERNELS = ("weights_layer", "weights_iter")


class _Kernels:
    """Each layer's kernels in every layout a primitive asked for, reordered once per layout."""

    def __init__(self, onednn):
        self.onednn = onednn
        self.copies = []  # (layer index, kernel name, our clone of the layout's descriptor, the reordered array)

    def get(self, layer, name, keras_kernel, gates, chosen):
        """``keras_kernel`` (inputs, gates * units), float32, in the layout ``chosen`` (a primitive's descriptor)."""
        onednn = self.onednn
        for index, kernel_name, descriptor, array in self.copies:
            if (index, kernel_name) == (layer, name) and onednn.library.dnnl_memory_desc_equal(descriptor, chosen):
                return array
        rows, columns = keras_kernel.shape
        keras_layout = onednn.memory_desc(  # (1, 1, inputs, gates, units) stored as Keras's (inputs, gates * units)
            (1, 1, rows, gates, columns // gates), (rows * columns, rows * columns, columns, columns // gates, 1)
        )
        array = Reorder(onednn, keras_layout, chosen)(keras_kernel)
        onednn.library.dnnl_memory_desc_destroy(keras_layout)
        clone = ctypes.c_void_p()  # the primitive's own descriptor dies with it; this one lives with the copy
        onednn.check(onednn.library.dnnl_memory_desc_clone(ctypes.byref(clone), chosen), "memory_desc_clone")
        self.copies.append((layer, name, clone, array))
        return array


class _Layer:
    """One layer's inference primitive for one batch size, its arguments bound once but for the states.

    ``source`` (batch, inputs) and ``destination`` (batch, units) are the stack's buffers between
    layers; the states come in and go out as arrays of their own (a caller may keep the old ones)."""

    def __init__(self, onednn, kind, index, arrays, *, source, destination, kernels):
        kernel, recurrent_kernel, bias = arrays  # Keras's layout; the bias already oneDNN's (to_onednn_bias)
        batch, units = destination.shape
        state = ((1, 1, batch, units), LDNC)
        shapes = {
            "src_layer": ((1, batch, source.shape[1]), TNC),
            "weights_layer": ((1, 1, source.shape[1], kind.gates, units), ANY),
            "weights_iter": ((1, 1, units, kind.gates, units), ANY),
            "bias": ((1, 1, kind.onednn_bias_gates, units), LDGO),
            "dst_layer": ((1, batch, units), TNC),
        }
        self.state_names = ("src_iter", "src_iter_c") if kind.has_cell_state else ("src_iter",)
        self.padded_state = [np.zeros((batch, units), np.float32) for _ in self.state_names]  # for fewer rows
        for name in self.state_names:  # each state in (src_) and out (dst_): h, and the LSTM's c
            shapes[name] = shapes[name.replace("src", "dst")] = state
        descriptors = {name: onednn.memory_desc(dims, layout) for name, (dims, layout) in shapes.items()}
        made = list(descriptors.values())  # ours to free once the primitive and memories hold copies
        self.descriptor = create_descriptor(onednn, kind, descriptors, _FORWARD_INFERENCE, what="inference")
        self.implementation = onednn.implementation(self.descriptor)
        self.primitive = onednn.primitive(self.descriptor)
        for name in _KERNELS:
            descriptors[name] = onednn.query_descriptor(self.descriptor, QUERY_ARGUMENT, ARGUMENTS[name])
        descriptors["scratchpad"] = onednn.query_descriptor(self.descriptor, QUERY_SCRATCHPAD)
        self.memories = {name: onednn.memory(descriptor) for name, descriptor in descriptors.items()}
        for descriptor in made:
            onednn.library.dnnl_memory_desc_destroy(descriptor)
        self.fixed = {  # kept alive as long as the memories that point at them
            "src_layer": source,
            "dst_layer": destination,
            "bias": bias,
            "weights_layer": kernels.get(index, "weights_layer", kernel, kind.gates, descriptors["weights_layer"]),
            "weights_iter": kernels.get(
                index, "weights_iter", recurrent_kernel, kind.gates, descriptors["weights_iter"]
            ),
        }
        self.scratchpad_bytes = onednn.size(descriptors["scratchpad"])  # its memory: the FusedLayers' one
        self.set_handle = onednn.library.dnnl_memory_set_data_handle
        for name, array in self.fixed.items():
            onednn.check(self.set_handle(self.memories[name], ctypes.c_void_p(array.ctypes.data)), "set_data_handle")
        self.arguments = (_ExecArgument * len(self.memories))(
            *(_ExecArgument(ARGUMENTS[name], memory) for name, memory in self.memories.items())
        )
        self.onednn = onednn

    def use_scratchpad(self, scratchpad):
        """Point the primitive at ``scratchpad`` (at least scratchpad_bytes): its temporary memory."""
        self.fixed["scratchpad"] = scratchpad
        self.onednn.check(
            self.set_handle(self.memories["scratchpad"], ctypes.c_void_p(scratchpad.ctypes.data)), "set_data_handle"
        )

    def step(self, state, stream):
        """This layer's next state from ``state`` (each (rows, units), rows up to the batch its primitive
        was made for: the rest are padding, whatever they hold); its output h is also in ``destination``."""
        rows = state[0].shape[0]
        if rows == self.padded_state[0].shape[0]:
            state = [np.ascontiguousarray(array, np.float32) for array in state]
        else:  # into the padded buffers' first rows (the others hold an earlier step's finite values)
            for buffer, array in zip(self.padded_state, state):
                buffer[:rows] = array
            state = self.padded_state
        next_state = tuple(np.empty_like(array) for array in state)
        for name, before, after in zip(self.state_names, state, next_state):
            self.set_handle(self.memories[name], ctypes.c_void_p(before.ctypes.data))
            self.set_handle(self.memories[name.replace("src", "dst")], ctypes.c_void_p(after.ctypes.data))
        library, check = self.onednn.library, self.onednn.check
        check(library.dnnl_primitive_execute(self.primitive, stream, len(self.arguments), self.arguments), "execute")
        check(library.dnnl_stream_wait(stream), "stream_wait")
        return tuple(array[:rows] for array in next_state)

    def close(self):
        """Free what oneDNN made for this layer (the shared kernels stay)."""
        library = self.onednn.library
        for memory in self.memories.values():
            library.dnnl_memory_destroy(memory)
        library.dnnl_primitive_destroy(self.primitive)
        library.dnnl_primitive_desc_destroy(self.descriptor)


class _Stack:
    """Every layer's primitive for one batch size, and the buffers that chain them."""

    def __init__(self, onednn, layers, embedding_dim, batch, kernels):
        widths = [embedding_dim] + [arrays[1].shape[0] for _, arrays in layers]
        self.buffers = [np.zeros((batch, width), np.float32) for width in widths]  # layer i reads i, writes i + 1
        self.layers = []
        try:
            for index, (kind, arrays) in enumerate(layers):
                source, destination = self.buffers[index], self.buffers[index + 1]
                self.layers.append(
                    _Layer(onednn, kind, index, arrays, source=source, destination=destination, kernels=kernels)
                )
        except RuntimeError:
            self.close()
            raise

    def close(self):
        for layer in self.layers:
            layer.close()


class FusedLayers:
    """A model's recurrent layers through oneDNN's inference primitives: ``step`` as the NumPy engine's
    layers take it, for any batch size (a stack of primitives made for each, the recent ones kept)."""

    def __init__(self, embedding, recurrent, *, widen):
        """``embedding`` (vocabulary, embedding_dim) and ``recurrent`` (``Network.recurrent``: Keras's
        arrays) as the archive holds them; ``widen()`` asks OpenMP for every core for this thread
        (onednn_products.OneDNNProducts.widen). RuntimeError where oneDNN is missing."""
        onednn, missing = onednn_status()
        if onednn is None:
            raise RuntimeError(missing)
        self.onednn, self.embedding, self.widen = onednn, embedding, widen
        self.layers = [
            (
                kind,
                (
                    np.ascontiguousarray(kernel, np.float32),
                    np.ascontiguousarray(recurrent_kernel, np.float32),
                    np.array(to_onednn_bias(kind, bias), np.float32),
                ),
            )
            for kind, (kernel, recurrent_kernel, bias) in recurrent
        ]
        self.kernels = _Kernels(onednn)
        self.stacks = OrderedDict()  # batch size -> _Stack, the most recently used last
        # One scratchpad for every primitive (2.8 MB a layer at a batch of 64 here): they run one at a time.
        self.scratchpad = np.empty(0, np.uint8)
        self.lock = threading.Lock()  # one stack's buffers: one step at a time
        self.stream = onednn.new_stream()

    def _stack(self, batch):
        stack = self.stacks.pop(batch, None)
        if stack is None:
            stack = _Stack(self.onednn, self.layers, self.embedding.shape[1], batch, self.kernels)
            while len(self.stacks) >= _MOST_BATCH_SIZES:
                self.stacks.popitem(last=False)[1].close()
            needed = max(layer.scratchpad_bytes for layer in stack.layers)
            if needed > self.scratchpad.nbytes:  # a bigger one, for every layer of every stack
                self.scratchpad = aligned_empty(needed)
                for layer in [layer for kept in self.stacks.values() for layer in kept.layers]:
                    layer.use_scratchpad(self.scratchpad)
            for layer in stack.layers:
                layer.use_scratchpad(self.scratchpad)
        self.stacks[batch] = stack
        return stack

    def step(self, tokens, state):
        """tokens (batch,) and the engine's state -> the last layer's h (batch, units) and the next state."""
        rows = len(tokens)
        with self.lock:
            self.widen()  # first: a primitive plans its work for the threads OpenMP gives when it is made
            stack = self._stack(-(-rows // ROWS_PER_SIZE) * ROWS_PER_SIZE)  # rows rounded up: padded
            np.take(self.embedding, tokens, axis=0, out=stack.buffers[0][:rows])  # (rows, embedding_dim)
            next_state = [layer.step(layer_state, self.stream) for layer, layer_state in zip(stack.layers, state)]
        return next_state[-1][0], next_state
