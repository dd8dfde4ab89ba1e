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

# What `textgen serve` takes from one request, whatever the client says (stated in each refusal).
# A body holds a prompt and a few settings: 1 MiB holds a prompt of a million ASCII characters, the
# most the generator reads (generation/generator.MAX_PROMPT_CHARACTERS). It is refused from its
# Content-Length, or as soon as more has arrived, never read whole.
MAX_REQUEST_BYTES = 1 << 20
# Tokens one choice writes: a char-RNN's text drifts long before this, and a stream of 20,000
# characters at the slowest measured rate (~5,000/s) ends within seconds.
MAX_COMPLETION_TOKENS = 20_000
# Choices of one request (`n`): each is a row of the model's batch.
MAX_CHOICES = 64
# Top alternatives returned per token (`logprobs`): OpenAI's own cap for completions.
MAX_LOGPROBS = 5
# Log-probabilities (each token's and its alternatives') in one response that is not streamed:
# n=64 x 20,000 tokens x (1 + 5) was 188 MB of JSON and took the server from 92 MB to 1.6 GB;
# 500,000 is ~12 MB. A stream sends them as they come and keeps none.
MAX_WHOLE_LOGPROBS = 500_000
# Stop strings per request: OpenAI's cap.
MAX_STOP_STRINGS = 4
# Rows one served model writes at once, over all its requests, unless `--max-streams` says otherwise:
# 256 rows of a 2x512 LSTM hold ~4 MB of state, and more clients get 429 (try again), not a slow crawl.
DEFAULT_MAX_STREAMS = 256
