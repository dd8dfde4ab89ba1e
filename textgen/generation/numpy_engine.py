"""The model's forward pass in NumPy: the cells of cells.py stacked, no TensorFlow.

Contract (generation/engines.py): ``step(tokens, state) -> (logits, state)``
with tokens (batch,) int and logits (batch, vocabulary) float32. ``run`` does
the same over a whole sequence, computing each layer's input projection
``x W + b`` for all time steps in one matrix product, so only ``h U`` remains
inside the time loop.

A step of a batch of streams may instead go through oneDNN's fused layers
(hardware/onednn_layers.py: a layer's products and gate math in one call), where
the engine's one-time trial of whole steps found them faster on this CPU: the
same equations, the numbers within ~1e-6.
"""

import time

import numpy as np

from textgen.hardware.onednn_activations import FASTEST as FASTEST_ACTIVATIONS
from textgen.hardware.onednn_layers import FusedLayers
from textgen.hardware.onednn_products import FASTEST as FASTEST_PRODUCTS
from textgen.hardware.onednn_products import SMALLEST_BATCH, FastestProducts

# Largest first-layer lookup table kept (float32 entries: 32 MB).
_MAX_TABLE_ENTRIES = 8_000_000
# The products' trial (_choose_products): steps of at most this many rows, this many per timing.
_TRIAL_ROWS, _TRIAL_STEPS = 256, 8


class NumpyEngine:
    """A textgen model's forward pass, one step or one sequence at a time."""

    def __init__(self, network):
        """``network``: a checked ``saved.keras_archive.Network``."""
        self.embedding = network.embedding  # (vocabulary, embedding_dim)
        self.cells = [kind.numpy_cell(*arrays) for kind, arrays in network.recurrent]
        self.products = FASTEST_PRODUCTS  # matrix products: NumPy's, or oneDNN's where measured faster here
        for cell in self.cells:  # and sigmoid and tanh likewise
            cell.activations, cell.products = FASTEST_ACTIVATIONS, FASTEST_PRODUCTS
        self.output_kernel, self.output_bias = network.output_kernel, network.output_bias  # (units, vocab), (vocab,)
        self.output_kernel_transposed = np.ascontiguousarray(self.output_kernel.T)  # (vocabulary, units)
        # The first layer's input is an embedding row, so its projection x W + b
        # can only take vocabulary_size values: compute them all once, and a
        # step looks its projection up instead of multiplying (unless huge).
        first = self.cells[0]
        self.first_projections = None
        if self.embedding.shape[0] * first.kernel.shape[1] <= _MAX_TABLE_ENTRIES:
            self.first_projections = np.ascontiguousarray(self.embedding @ first.kernel + first.bias)
        self.recurrent = network.recurrent  # Keras's arrays, for oneDNN's fused layers (_choose_fused_layers)
        self.fused = None  # hardware/onednn_layers.FusedLayers, for batches, where the trial found it faster
        self.fused_tried = False

    @property
    def vocabulary_size(self):
        return self.output_kernel.shape[1]

    def initial_state(self, batch_size):
        """Zero states: one tuple of (batch, units) arrays per layer."""
        return [cell.zero_state(batch_size) for cell in self.cells]

    def prepare(self, batch_size):
        """Take one throwaway step at ``batch_size`` streams, so that the one-time trials of the
        fastest activations and products (hardware/onednn_*.py, ~0.2 s) happen now, not under a
        stream that is being written (a server calls this as it starts)."""
        self.step(np.zeros(batch_size, np.int64), self.initial_state(batch_size))
        if isinstance(self.products, FastestProducts):
            self.products.last_batch = 0.0  # a throwaway batch: a single stream after it need not follow it

    def _first_layer_inputs(self, tokens):
        """x W + b of the first layer for tokens of any shape: (..., gates * units)."""
        if self.first_projections is not None:
            return self.first_projections[tokens]
        return self.cells[0].project_inputs(self.embedding[tokens])

    def _choose_products(self, rows):
        """Before the first batch of SMALLEST_BATCH rows or more: NumPy's or oneDNN's products, whichever
        takes whole steps of this model faster here (onednn_products.py says why whole steps), once per
        process; then, once per engine, oneDNN's fused layers for batches or not (_choose_fused_layers)."""
        if self.products is not FASTEST_PRODUCTS or rows < SMALLEST_BATCH:
            return
        rows = min(rows, _TRIAL_ROWS)
        tokens, state = np.zeros(rows, np.int64), self.initial_state(rows)
        if FASTEST_PRODUCTS.chosen is None:

            def seconds_with(products):
                for part in (self, *self.cells):
                    part.products = products
                try:
                    return self._seconds_per_steps(tokens, state)
                finally:
                    for part in (self, *self.cells):
                        part.products = FASTEST_PRODUCTS

            FASTEST_PRODUCTS.choose(seconds_with)
        if not self.fused_tried:
            self.fused_tried = True
            self._choose_fused_layers(tokens, state)

    def _choose_fused_layers(self, tokens, state):
        """oneDNN's fused layers (hardware/onednn_layers.py) for batches, where whole steps through them
        and oneDNN's products are faster than through the cells with the chosen products."""
        made = []

        def seconds_with(products):  # None: the cells, through the products chosen
            if products is not None and not made:
                made.append(FusedLayers(self.embedding, self.recurrent, widen=products.widen))
            self.fused, self.products = (made[0], products) if products else (None, FASTEST_PRODUCTS)
            try:
                seconds = self._seconds_per_steps(tokens, state)
                if products is not None and self.fused is None:
                    raise RuntimeError("oneDNN refused the fused layers")  # (_fused_layers_step fell back)
                return seconds
            finally:
                self.fused, self.products = None, FASTEST_PRODUCTS

        if FASTEST_PRODUCTS.choose_fused(seconds_with):
            self.fused = made[0]

    def _seconds_per_steps(self, tokens, state):
        """The best of three timings of _TRIAL_STEPS steps at the batch of ``tokens``."""
        self._step(tokens, state)  # once first: code paths warm, threads up, primitives made
        best = float("inf")
        for _ in range(3):  # a busy moment of the machine must not decide
            started = time.perf_counter()
            for _ in range(_TRIAL_STEPS):
                self._step(tokens, state)
            best = min(best, time.perf_counter() - started)
        return best

    def step(self, tokens, state):
        """tokens (batch,) -> logits (batch, vocabulary) and the next state."""
        tokens = np.asarray(tokens)
        self._choose_products(len(tokens))
        return self._step(tokens, state)

    def _step(self, tokens, state):
        batch = self.fused is not None and len(tokens) >= SMALLEST_BATCH
        hidden, next_state = (self._fused_layers_step if batch else self._cells_step)(tokens, state)
        logits = self.products.project(hidden, self.output_kernel, self.output_kernel_transposed, self.output_bias)
        return logits, next_state

    def _cells_step(self, tokens, state):
        """The layers' step through cells.py: the last layer's h (batch, units) and the next state."""
        next_state = []
        for index, (cell, layer_state) in enumerate(zip(self.cells, state)):
            if index == 0:
                hidden, layer_state = cell.recur(self._first_layer_inputs(tokens), layer_state)  # (batch, units)
            else:
                hidden, layer_state = cell.step(hidden, layer_state)
            next_state.append(layer_state)
        return hidden, next_state

    def _fused_layers_step(self, tokens, state):
        """The same through oneDNN's fused layers: one call a layer."""
        try:
            return self.fused.step(tokens, state)
        except RuntimeError:  # oneDNN refused a primitive for this batch size: the cells from now on
            self.fused = None
            return self._cells_step(tokens, state)

    def run(self, tokens, state):
        """tokens (batch, time) -> logits (batch, time, vocabulary) and the state after the last step.

        Runs layer by layer: each layer's input projection for every time step
        is one matrix product, and only the recurrent part loops over time.
        """
        tokens = np.asarray(tokens)
        self._choose_products(tokens.shape[0])  # the batch: one prompt's time steps are not streams
        if self.fused is not None and tokens.shape[0] >= SMALLEST_BATCH:  # many prompts read together
            hidden = np.empty(tokens.shape + (self.cells[-1].units,), np.float32)  # (batch, time, units)
            for t in range(tokens.shape[1]):
                hidden[:, t], state = self._fused_layers_step(tokens[:, t], state)
            logits = self.products.project(hidden, self.output_kernel, self.output_kernel_transposed, self.output_bias)
            return logits, state
        next_state, hidden = [], None
        for index, (cell, layer_state) in enumerate(zip(self.cells, state)):
            # (batch, time, gates * units)
            projected = self._first_layer_inputs(tokens) if index == 0 else cell.project_inputs(hidden)
            outputs = np.empty(projected.shape[:2] + (cell.units,), np.float32)  # (batch, time, units)
            for t in range(projected.shape[1]):
                outputs[:, t], layer_state = cell.recur(projected[:, t], layer_state)
            hidden = outputs
            next_state.append(layer_state)
        logits = self.products.project(hidden, self.output_kernel, self.output_kernel_transposed, self.output_bias)
        return logits, next_state
