"""The GEMM-bound ceiling: this machine's matrix-product rates at a model's own shapes, as characters/s.

Training a recurrent network is, in floating-point work, almost all matrix
products. Per character (one time step of one window), a layer with input I,
units U and G gate blocks (LSTM 4, GRU 3, SimpleRNN 1) costs

    forward    2 I G U  x W                 2 U G U  h U
    backward   4 I G U  d x and d W         4 U G U  d h and d U

and the output layer 6 U V (V: the vocabulary). h U and d h run one time step
at a time, (batch, U) @ (U, G U) and (batch, G U) @ (G U, U): small products,
slower per FLOP. The others can be done for the whole window at once, with
batch * time rows: large products. Each is measured at its own shape.
The ceiling is how fast a machine that did nothing but these products, each at
its measured rate, would train: no gate math, no copies, no optimizer, no input
pipeline. A trainer's chars/s divided by it is the fraction of the machine it uses.

The rates are oneDNN's matmul (the library the kernel trains with) on this CPU,
float32, and bfloat16 (bf16 inputs, f32 results) where the CPU has it natively,
best of several repeats, the weights in the layout oneDNN picks for them.

    python benchmarks/ceiling.py [--cell lstm] [--units 256] [--layers 2] [--batch 64] [--seq-length 100]
"""

import argparse
import ctypes
import time

import numpy as np
from machine import describe_cpu

from textgen.cells import CELLS
from textgen.hardware.onednn import ANY, ARGUMENTS, BF16, F32, OneDNN, aligned_empty, load_library

_PLAIN_2D = 3  # oneDNN's format tag "ab": row-major (rows, columns)
EMBEDDING_DIM, VOCABULARY = 64, 65  # textgen's default embedding; tiny_shakespeare's characters


class MatrixProduct:
    """(m, k) @ (k, n) through oneDNN's matmul primitive, in float32 or bfloat16 (f32 result)."""

    def __init__(self, onednn, m, k, n, data_type):
        self.onednn = onednn
        source = onednn.memory_desc((m, k), _PLAIN_2D, data_type)
        weights = onednn.memory_desc((k, n), ANY, data_type)
        destination = onednn.memory_desc((m, n), _PLAIN_2D, F32)
        self.descriptor = ctypes.c_void_p()
        create = onednn.library.dnnl_matmul_primitive_desc_create
        onednn.check(
            create(ctypes.byref(self.descriptor), onednn.engine, source, weights, None, destination, onednn.attributes),
            "matmul_primitive_desc_create",
        )
        self.implementation = onednn.implementation(self.descriptor)
        self.primitive = onednn.primitive(self.descriptor)
        chosen = onednn.query_descriptor(self.descriptor, 255, ARGUMENTS["weights_layer"])
        scratchpad = onednn.query_descriptor(self.descriptor, 136)
        self.memories = {
            "src": onednn.memory(source),
            "weights_layer": onednn.memory(chosen),
            "dst": onednn.memory(destination),
            "scratchpad": onednn.memory(scratchpad),
        }
        # Bytes of 0x3c: every float32 and bfloat16 reads as about 0.0115 (no zeros, no denormals).
        self.arrays = {
            name: np.full(size, 0x3C, np.uint8)
            for name, size in (("src", onednn.size(source)), ("dst", onednn.size(destination)))
        }
        self.arrays["weights_layer"] = aligned_empty(onednn.size(chosen))
        self.arrays["weights_layer"][:] = 0x3C
        self.arrays["scratchpad"] = np.empty(max(onednn.size(scratchpad), 1), np.uint8)
        self.flops = 2 * m * k * n

    def rate(self, repeats=7, minimum_seconds=0.1):
        """FLOP/s, best of ``repeats`` timings of enough products to take ``minimum_seconds``."""
        run = lambda: self.onednn.execute(self.primitive, self.memories, self.arrays)  # noqa: E731
        count = 1
        while True:
            started = time.perf_counter()
            for _ in range(count):
                run()
            if time.perf_counter() - started >= minimum_seconds:
                break
            count *= 2
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(count):
                run()
            best = min(best, (time.perf_counter() - started) / count)
        return self.flops / best


def products(cell, units, layers, batch, seq_length, vocabulary=VOCABULARY, embedding_dim=EMBEDDING_DIM):
    """[(what, m, k, n, FLOPs per character)]: the matrix products of one training step, as the docstring counts.

    A product is (m, k) @ (k, n); the per-step ones run seq_length times a step.
    """
    gates, rows = CELLS[cell].gates, batch * seq_length
    shapes = []
    for index in range(layers):
        inputs, columns = (embedding_dim if index == 0 else units), gates * units
        name = f"layer {index + 1}"
        shapes += [
            (f"{name} x W", rows, inputs, columns, 1),
            (f"{name} d x", rows, columns, inputs, 1),
            (f"{name} d W", inputs, rows, columns, 1),
            (f"{name} h U, per step", batch, units, columns, seq_length),
            (f"{name} d h, per step", batch, columns, units, seq_length),
            (f"{name} d U", units, rows, columns, 1),
        ]
    shapes += [
        ("logits", rows, units, vocabulary, 1),
        ("logits d h", rows, vocabulary, units, 1),
        ("logits d W", units, rows, vocabulary, 1),
    ]
    return [(what, m, k, n, 2 * m * k * n * times / rows) for what, m, k, n, times in shapes]


def ceiling(onednn, precision, work):
    """(chars/s, [(what, m, k, n, FLOPs per char, GFLOP/s, implementation)]) at ``precision``'s measured rates."""
    data_type = {"float32": F32, "bfloat16": BF16}[precision]
    seconds_per_character, rows, measured = 0.0, [], {}
    for what, m, k, n, flops in work:
        if (m, k, n) not in measured:  # a shape met twice is measured once
            product = MatrixProduct(onednn, m, k, n, data_type)
            measured[m, k, n] = product.rate(), product.implementation
        rate, implementation = measured[m, k, n]
        seconds_per_character += flops / rate
        rows.append((what, m, k, n, flops, rate / 1e9, implementation))
    return 1 / seconds_per_character, rows


def native_bfloat16():
    from textgen.hardware.precision import cpu_flags, has_native_bfloat16

    return has_native_bfloat16(cpu_flags())


def ceilings(cell, units, layers, batch, seq_length, vocabulary=VOCABULARY):
    """{precision: chars/s} of this machine for the model: float32, and bfloat16 where native."""
    library, reason = load_library()
    if library is None:
        raise SystemExit(f"no oneDNN here: {reason}")
    onednn = OneDNN(library)
    work = products(cell, units, layers, batch, seq_length, vocabulary)
    precisions = ["float32"] + (["bfloat16"] if native_bfloat16() else [])
    return {precision: ceiling(onednn, precision, work) for precision in precisions}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm", choices=sorted(CELLS))
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-length", type=int, default=100)
    parser.add_argument("--vocabulary", type=int, default=VOCABULARY)
    arguments = parser.parse_args()
    print(describe_cpu())
    shape = (arguments.cell, arguments.units, arguments.layers, arguments.batch, arguments.seq_length)
    results = ceilings(*shape, arguments.vocabulary)
    print(
        f"{arguments.layers}x{arguments.units} {arguments.cell}, batch {arguments.batch}, "
        f"seq {arguments.seq_length}, vocabulary {arguments.vocabulary}"
    )
    for precision, (rate, rows) in results.items():
        total = sum(row[4] for row in rows)
        print(f"\n{precision}: {total / 1e6:.2f} MFLOP per character; GEMM-bound ceiling {rate:,.0f} chars/s")
        print(f"  {'product':<32} {'m x k x n':>18} {'MFLOP/char':>10} {'GFLOP/s':>8}  oneDNN")
        for what, m, k, n, flops, gigaflops, implementation in rows:
            print(f"  {what:<32} {f'{m}x{k}x{n}':>18} {flops / 1e6:>10.3f} {gigaflops:>8.1f}  {implementation}")


if __name__ == "__main__":
    main()
