"""Continuous batching: every live stream of one model is one row of one batched engine step.

One thread per model runs this loop:

    take in new requests   those that reached the server together, together (arrivals.py); their
                           prompts run through the network as one batch, a piece per turn, so a
                           long prompt never stalls the streams already writing (prompt_reading.py);
                           then each of the request's n choices becomes a row
    drop rows              whose client went away (the HTTP side cancels them)
    choose                 a token for every row at once (row_sampling.py), each row by its own settings
    hand out               each row's new text to its request's sink; finished rows leave
    step                   the engine once, for the rows still writing: (rows,) -> (rows, vocabulary)

so 64 clients cost one batch-64 step per token, not 64 steps. The state of the
batch is one (rows, units) array per layer and state part; rows join by
concatenation and leave by indexing, only when membership changes.

Python per row per step cost as much as the step's arithmetic at 64 rows (the
batcher ran at 0.80-0.85x of `textgen sample --num-samples 64`), so most rows,
"plain" ones (no stop strings, no log-probabilities), keep their tokens as one
(rows,) array per step, handed out together every HAND_OUT_SECONDS, at once
after a join (the time to the first character) and at the step the first of
them reaches its length (they all count down together). "Watched" rows (stop
strings, log-probabilities) are scanned at every step. What depends only on
which rows are in the batch is worked out once per change (``_arrange``).
"""

import collections
import math
import threading
import time

import numpy as np

from textgen.serving.arrivals import Arrivals
from textgen.serving.openai_requests import RequestRefused
from textgen.serving.prompt_reading import read_piece
from textgen.serving.row_sampling import RowDraws, RowSampler
from textgen.serving.rows import Job, Row, random_generator

# Streams the engine's step is first timed at (NumpyEngine.prepare), as the loop starts.
PREPARED_BATCH = 64
# Seconds at most between two hand-outs of the plain rows' text: well under a sink's
# 20 ms between sends (stream_sink.py), so the streams look no less continuous.
HAND_OUT_SECONDS = 0.005


class Batcher:
    """The batching loop of one model, in a thread of its own."""

    def __init__(self, generator, *, max_rows):
        self.generator, self.max_rows = generator, max_rows
        self.engine, self.vocabulary = generator.engine, generator.tokenizer.vocabulary
        self.sampler = RowSampler(generator.tokenizer.unknown_id)
        self._condition = threading.Condition()
        self._arrivals = Arrivals(self._take_in)  # Jobs submitted while the event loop reads a burst
        self._waiting = collections.deque()  # Jobs handed over, not yet taken in by the loop
        self._reading = []  # Jobs whose prompt is being read (the loop's own)
        self._reserved = 0  # rows of waiting and live jobs
        self._stopping = False
        self._closed = False  # the loop has ended: jobs handed over now end at once
        self._cancel_noticed = False  # a sink was cancelled since the rows were last looked at
        self.rows, self.state, self.logits = [], None, None
        self._draws = RowDraws()  # the rows' uniforms, in the batch's order
        self._history = []  # one (rows,) array of tokens per step since the last hand-out
        self._hand_out_at = 0.0  # time.monotonic() by which the plain rows' text goes out
        self._arranged = False  # whether the facts _arrange works out describe self.rows
        self.steps = 0  # engine steps taken (the server's /health reports it)
        self._thread = threading.Thread(target=self._loop, name="textgen-batcher", daemon=True)
        self._thread.start()

    @property
    def streams(self):
        """Rows this model is writing or about to (the server's /health reports it)."""
        with self._condition:
            return self._reserved

    def submit(self, completion, ids, sink):
        """Queue a checked request (on the event loop's thread, with the burst it came in:
        arrivals.py); a refusal (429) when the model's batch is full."""
        sink.on_cancel = self._notice_cancel
        with self._condition:
            self._reserve(completion.choices)
        self._arrivals.arrived(sink.loop, Job(completion, ids, sink))

    def _take_in(self, jobs):
        """A burst's jobs, for the loop to read; ended at once if the loop has ended (a stop)."""
        with self._condition:
            if not self._closed:
                self._waiting.extend(jobs)
                self._condition.notify()
                return
        for job in jobs:
            job.sink.end_all(job.completion.choices, "abort")

    def _notice_cancel(self):
        """Called by a sink (any thread) after it was cancelled: the loop looks for its rows."""
        self._cancel_noticed = True

    def reserve(self, rows):
        """Count ``rows`` of work done elsewhere (a beam search) against the limit; release() them after."""
        with self._condition:
            self._reserve(rows)

    def release(self, rows):
        with self._condition:
            self._reserved -= rows

    def _reserve(self, rows):
        if self._stopping:
            raise RequestRefused("the server is shutting down", status=503, kind="server_error")
        if self._reserved + rows > self.max_rows:
            raise RequestRefused(
                f"this model is writing {self._reserved} streams, at most {self.max_rows} at once; try again",
                status=429,
                code="too_many_streams",
                kind="rate_limit_error",
            )
        self._reserved += rows

    def request_stop(self):
        """Have the thread end every stream (finish_reason "abort") and itself, without waiting for it."""
        with self._condition:
            self._stopping = True
            self._condition.notify()

    def stop(self):
        self.request_stop()
        self._thread.join()

    def _loop(self):
        # The engine's one-time trials (NumPy's or oneDNN's products, which run a batch faster here)
        # happen before the first request, at the batch size a busy server reaches.
        self.engine.prepare(min(self.max_rows, PREPARED_BATCH))
        while True:
            if not self.rows:  # idle: sleep until a request comes (while rows write, no lock is taken)
                with self._condition:
                    while not (self.rows or self._waiting or self._reading or self._stopping):
                        self._condition.wait()
            if self._stopping:
                break
            if self._waiting or self._reading:
                self._read_prompts()
            if self._cancel_noticed:
                self._drop_cancelled()
            if self.rows:
                self._step()
        with self._condition:
            self._closed = True  # from now on, _take_in ends the jobs itself
        self._hand_out()  # what the rows wrote before the stop, then their final event
        for row in self.rows:
            self._finish(row, "abort")
        for job in [*self._reading, *self._waiting]:
            job.sink.end_all(job.completion.choices, "abort")

    def _read_prompts(self):
        """A piece of the prompts being read (prompt_reading.py); the jobs read whole join together."""
        while self._waiting:  # the deque's own operations are thread-safe
            self._reading.append(self._waiting.popleft())
        self.release(sum(job.completion.choices for job in self._reading if job.sink.cancelled))
        self._reading = [job for job in self._reading if not job.sink.cancelled]
        read = read_piece(self.engine, self._reading, writing=bool(self.rows))
        if read:
            self._reading = [job for job in self._reading if job.read < len(job.ids)]
            self._join(read)

    def _join(self, jobs):
        """Jobs whose prompt is read: their choices become rows of the batch, in one concatenation."""
        new_rows, logits, states = [], [], []
        for job in jobs:
            settings, count = job.completion.settings, job.completion.choices
            if settings.length == 0:
                job.sink.end_all(count, "length")
                self.release(count)
                continue
            draws = self.sampler.sampler(settings).name != "greedy"
            for index in range(count):
                rng = random_generator(settings.seed, index)
                new_rows.append(Row(job, index, settings, rng, job.completion.logprobs, draws=draws))
            logits.append(np.repeat(job.logits, count, axis=0))
            states.append([tuple(np.repeat(array, count, axis=0) for array in layer) for layer in job.state])
        if not new_rows:
            return
        self._hand_out()  # the text so far belongs to the rows as they were
        if self.rows:
            logits, states = [self.logits, *logits], [self.state, *states]
        self.logits = np.concatenate(logits)
        self.state = [tuple(map(np.concatenate, zip(*parts))) for parts in zip(*states)]
        self.rows = self.rows + new_rows
        self._draws.join(new_rows)
        self._arranged = False
        self._hand_out_at = 0.0  # the new rows' first character goes out after the next step

    def _arrange(self):
        """What depends only on which rows are in the batch, worked out once per change."""
        self._plan = self.sampler.plan(self.rows)
        self._plain = [position for position, row in enumerate(self.rows) if row.plain]
        self._watched = [position for position, row in enumerate(self.rows) if not row.plain]
        self._alternatives = max((row.logprobs or 0) for row in self.rows)
        self._log_probabilities = any(row.logprobs is not None for row in self.rows)
        # Steps until a plain row reaches its length (they all count down together).
        self._countdown = min((self.rows[position].remaining for position in self._plain), default=math.inf)
        self._arranged = True

    def _keep(self, keep):
        """Keep only the rows where ``keep`` (rows,) is True, with their logits, state and draws;
        called with no text waiting (it would belong to the rows as they were)."""
        self.rows = [row for row, kept in zip(self.rows, keep) if kept]
        self.logits = self.logits[keep]
        self.state = [tuple(array[keep] for array in layer) for layer in self.state]
        self._draws.keep(keep)
        self._arranged = False

    def _drop_cancelled(self):
        self._cancel_noticed = False  # first, so a cancel while the rows are looked at is seen next turn
        if not any(row.request.sink.cancelled for row in self.rows):
            return
        self._hand_out()
        keep = np.array([not row.request.sink.cancelled for row in self.rows], bool)
        self.release(int((~keep).sum()))
        self._keep(keep)

    def _step(self):
        if not self._arranged:
            self._arrange()
        tokens, log_probabilities, likeliest = self.sampler.choose(
            self.logits,
            self._plan,
            self._draws.next(self.rows),
            log_probabilities=self._log_probabilities,
            top_alternatives=self._alternatives,
        )
        self._history.append(tokens)
        self._countdown -= 1
        finished = False
        if self._watched:
            chosen = tokens.tolist()  # Python ints: fast lookups
            for position in self._watched:
                row, token = self.rows[position], chosen[position]
                entry = None
                if row.logprobs is not None:
                    entry = self._entry(token, log_probabilities[position], likeliest, position, row.logprobs)
                finished |= self._write(row, self.vocabulary[token], entry)
        if finished or self._countdown == 0 or time.monotonic() >= self._hand_out_at:
            keep = self._hand_out()
            if keep is not None:
                tokens = tokens[keep]
        if self.rows:
            self.logits, self.state = self.engine.step(tokens, self.state)  # (rows, vocabulary)
            self.steps += 1

    def _hand_out(self):
        """Give each plain row the text of its tokens since the last hand-out, and drop the rows that
        finished; returns the (rows,) mask of the rows kept, or None when none left."""
        self._hand_out_at = time.monotonic() + HAND_OUT_SECONDS
        if not self._history:
            return None
        steps = len(self._history)
        written = np.stack(self._history, axis=1).tolist()  # (rows, steps) of Python ints
        self._history = []
        vocabulary, dropped = self.vocabulary, False
        for position in self._plain:
            row = self.rows[position]
            row.request.sink.put(row.index, "".join([vocabulary[token] for token in written[position]]), ())
            row.remaining -= steps
            row.scanner.steps += steps
            if row.remaining == 0:
                self._finish(row, "length")
        for row in self.rows:
            dropped |= row.finished
        if not dropped:
            return None
        keep = np.array([not row.finished for row in self.rows], bool)
        self._keep(keep)
        return keep

    def _entry(self, token, log_probability, likeliest, position, wanted):
        """A token's log-probability entry: (token, log p, [(alternative, log p)] of the ``wanted`` likeliest)."""
        top = zip(likeliest[0][position, :wanted].tolist(), likeliest[1][position, :wanted].tolist()) if wanted else ()
        return self.vocabulary[token], float(log_probability), [(self.vocabulary[i], value) for i, value in top]

    def _write(self, row, piece, entry):
        """Hand a watched row's new token to its request, stop strings held back; True when the row
        has finished."""
        released, entries, reason = row.write(piece, entry)
        if released or entry is not None:
            row.request.sink.put(row.index, released, entries)
        if reason is not None:
            self._finish(row, reason)
        return reason is not None

    def _finish(self, row, reason):
        row.finished = True
        row.request.sink.end(row.index, reason, row.scanner.steps)
        self.release(1)
