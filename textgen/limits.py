"""Absolute caps: sizes textgen refuses whatever a file or a directory says about itself.

A model directory describes its own network (config.json, tokenizer.json), and
the sizes it may hold follow from that description; but a directory from a
stranger chooses its description too. These caps bound every read however the
description reads, each with its reason. They sit far above anything textgen
trains on a laptop or one GPU, and far below what would exhaust such a machine.
"""

# Parameters of a whole network: 300 million float32 = 1.2 GB of weights. A 4x2048 LSTM with a
# 64k-token vocabulary has ~270 million; anything larger does not train on the machines textgen is for.
# The weights are read lazily (h5py through the open file), so this bounds the check, not a buffer.
MAX_PARAMETERS = 300_000_000
# Tokens in a vocabulary: a word level without --max-vocab on a 1 GB corpus reaches ~2 million.
MAX_VOCABULARY = 4_000_000
# A JSON file of a model directory (config, tokenizer, metrics, backup): kilobytes; a big
# vocabulary's tokenizer.json a few dozen MB.
MAX_JSON_BYTES = 64 << 20
# A weights file holds each weight and, in a backup, Adam's two moments (3x), plus HDF5's bookkeeping.
MAX_WEIGHTS_FILE_BYTES = 3 * 4 * MAX_PARAMETERS + (16 << 20)
# Steps of one run: a billion steps is years of training at the fastest rate measured.
MAX_GLOBAL_STEP = 1_000_000_000
# Reads grow in pieces of this size, so memory follows what a file really holds, not the cap.
READ_PIECE_BYTES = 16 << 20
