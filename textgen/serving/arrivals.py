"""Requests that reach the server together go to the batcher together, once the event loop has read them.

64 clients that connect at once are 64 requests that the event loop reads one
after another (0.1-0.2 ms each: httptools, Starlette's routing, the handler).
Handed to the batcher one by one, the batcher woke at the first and read prompts
and stepped rows while the event loop was still reading the rest. Both need
Python's interpreter lock, and a thread that waits for it may wait a whole
switch interval (5 ms), so both crawled: the event loop took 13 ms to read the
64 requests, and the batcher 11.5 ms to read 54 four-character prompts that one
~4 ms run reads when it has the interpreter to itself.

So a request's job waits on the event loop until the loop has gone
``QUIET_TURNS`` turns without another request arriving, and then every job
that waited goes to the batcher at once, or ``MOST_SECONDS`` after the first of
them came, if requests never stop coming. A turn is one pass of the event loop
(the callbacks that were ready, then a look at the sockets): a lone request
waits two passes (tens of microseconds), a burst goes over whole once read.
Measured on 2 cores (benchmarks/RESULTS.md): 64 clients at once got their first
character in 0.75x the time and 1.07x the characters per second, 16 clients 1.19x.
"""

import time

# Turns of the event loop without a new request before the waiting jobs go to the batcher. A
# request whose socket the loop reads in one turn reaches its handler in the next, after this
# class's check: one quiet turn can be a request on its way, two are not.
QUIET_TURNS = 2
# Seconds at most that a job waits on the loop: a request arriving in every turn must not hold back
# the ones before it (64 requests at once take the loop ~11 ms here).
MOST_SECONDS = 0.05


class Arrivals:
    """The jobs a batcher has been handed since the event loop last went quiet (event loop thread only)."""

    def __init__(self, hand_over):
        self._hand_over = hand_over  # called with a list of jobs, on the event loop's thread
        self._jobs = []
        self._arrived = 0  # jobs arrived, ever
        self._seen = 0  # of them, those arrived by the last check
        self._quiet = 0  # turns since the last arrival
        self._checking_on = None  # the event loop a check is scheduled on, if any
        self._due = 0.0  # time.monotonic() by which the jobs go over, however busy the loop is

    def arrived(self, loop, job):
        """A job from a handler running on ``loop``; handed over once the loop goes quiet."""
        self._jobs.append(job)
        self._arrived += 1
        # (a loop closed with a check still scheduled never runs it: the next loop's check takes over)
        if self._checking_on is None or self._checking_on.is_closed():
            self._checking_on, self._seen, self._quiet = loop, self._arrived, 0
            self._due = time.monotonic() + MOST_SECONDS
            loop.call_soon(self._check, loop)

    def _check(self, loop):
        if self._arrived != self._seen:  # more came in the last turn: the burst goes on
            self._seen, self._quiet = self._arrived, 0
        else:
            self._quiet += 1
        if self._quiet < QUIET_TURNS and time.monotonic() < self._due:
            loop.call_soon(self._check, loop)  # runs in the loop's next turn
            return
        self._checking_on = None
        jobs, self._jobs = self._jobs, []
        self._hand_over(jobs)
