"""Engines: what runs the network while text is written, behind one contract.

    step(tokens, state) -> (logits, state)   tokens (batch,) int; logits (batch, vocabulary) float32
    run(tokens, state)  -> (logits, state)   tokens (batch, time); logits (batch, time, vocabulary)
    initial_state(batch_size)                zero states, one tuple of (batch, units) arrays per layer
    vocabulary_size

The sampler, beam search and evaluation only ever call these, so they never
know which engine they have. ``ENGINES`` (textgen/engine_registry.py) is the
registry, by the name users give to ``--engine``; each engine is imported only
when asked for, so the NumPy one never loads TensorFlow.
"""

import importlib

from textgen.engine_registry import AUTO_ENGINE, ENGINES
from textgen.errors import TextgenError
from textgen.native_logs import quiet_native_logs


def engine_name(name):
    """The registered engine ``name`` stands for ("auto" -> the one it picks)."""
    if name == "auto":
        return AUTO_ENGINE
    if name not in ENGINES:
        raise TextgenError(f"engine must be one of auto, {', '.join(ENGINES)}; got {name!r}")
    return name


def build_engine(name, network):
    """The engine registered as ``name`` (or "auto"), running ``network``."""
    module, class_name = ENGINES[engine_name(name)]
    with quiet_native_logs():  # the Keras engine loads TensorFlow
        engine_class = getattr(importlib.import_module(module), class_name)
    return engine_class(network)
