"""Reading the prompts of the requests a batcher has taken in: one batched run of the network a turn.

Every job being read advances by the same number of tokens (the fewest any has
left, ``PROMPT_PIECE`` in all at most), so 64 short prompts that arrive together
are read as one batch of 64 (one at a time, they kept the 64th client's first
character waiting ~20 ms), and a long prompt is read a piece per turn of the
batcher's loop (shorter while rows write), holding back neither a short prompt
nor the streams already writing.
"""

import numpy as np

from textgen.generation.generator import PROMPT_CHUNK

# Prompt tokens read per turn of the loop before the live rows step again, and at most this many in
# sequence while rows write (a 900k-character prompt read 512 at a time kept a request beside it 9 s).
PROMPT_PIECE, PROMPT_STEPS_WHILE_WRITING = min(PROMPT_CHUNK, 512), 16


def read_piece(engine, jobs, *, writing):
    """Run the next piece of the prompts of ``jobs`` (rows.Job, each with ids left to read) through
    ``engine`` as one batch, ``writing``: whether rows are writing meanwhile. Each job read keeps its
    state and last logits (batch 1); returns the jobs now read whole."""
    reading = jobs[:PROMPT_PIECE]  # a token each at least
    if not reading:
        return []
    longest = PROMPT_STEPS_WHILE_WRITING if writing else PROMPT_PIECE  # tokens in sequence
    piece = min(min(len(job.ids) - job.read for job in reading), PROMPT_PIECE // len(reading), longest)
    tokens = np.stack([job.ids[job.read : job.read + piece] for job in reading])  # (jobs, piece)
    states = [job.state or engine.initial_state(1) for job in reading]
    state = [tuple(map(np.concatenate, zip(*parts))) for parts in zip(*states)]  # (jobs, units) per part
    logits, state = engine.run(tokens, state)  # (jobs, piece, vocabulary): only the last is kept
    last = logits[:, -1].copy()
    for position, job in enumerate(reading):
        job.read += piece
        job.logits = last[position : position + 1]
        job.state = [tuple(array[position : position + 1] for array in layer) for layer in state]
    return [job for job in reading if job.read == len(job.ids)]
