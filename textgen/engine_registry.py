"""The sampling engines, by the name users give ``--engine``, and the one ``auto`` picks.

Plain names and strings on the ground floor: config.py offers them as choices
and generation/engines.py builds them (importing each module only when asked
for, so the NumPy engine never loads TensorFlow).
"""

# name -> (module, class); every engine is built from a checked saved.keras_archive.Network.
ENGINES = {
    "numpy": ("textgen.generation.numpy_engine", "NumpyEngine"),  # the equations in NumPy: starts in ~0.2 s
    "keras": ("textgen.generation.keras_engine", "KerasEngine"),  # a compiled TensorFlow step: GPUs, big batches
}
# What "auto" picks. NumPy, everywhere we have measured (benchmarks/sampling_speed.py,
# 2-layer 256-unit LSTM, 2-core CPU): one stream 10k chars/s against the compiled
# TensorFlow step's 1.4k, 64 streams 58k-63k against 35k, and it starts without
# TensorFlow's 2.5 s import. A GPU pays off only for batches far larger than sampling uses.
AUTO_ENGINE = "numpy"
