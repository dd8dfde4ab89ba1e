"""Where the batcher's thread leaves one request's events for the event loop that answers it.

The batcher writes a token for every row at every step, thousands a second; the
HTTP side sends whatever has piled up each time it gets to run. So a sink is a
locked list plus one wake-up: the event loop is woken only when the list goes
from empty to not empty, and a client that reads slowly gets fewer, longer
pieces, never a backlog of events. The first piece goes out at once (the time
to the first character); after it, a request's events are gathered for at least
``STREAM_INTERVAL`` between sends: 50 pieces a second look continuous, while an
event per token per client cost the server 5x its writing rate at 64 clients
(benchmarks/serve_load.py). With more than ``FULL_RATE_STREAMS`` streams open
each one sends less often (up to ``MAX_STREAM_INTERVAL`` apart), so the event
loop sends about as many pieces a second in all however many clients there are:
it shares the cores with the batcher, and on a 2-core AVX2 machine 64 clients
got 0.33-0.36x of `textgen sample --num-samples 64` at 20 ms, 0.51-0.52x at 80.
A choice's end cuts the wait short: the last piece and the end go out at once, not up to an
interval after the text was written (a 500-token stream's last 7 characters came 20 ms late).

Events, in order per choice:
    ("text", index, text, entries)   new text of choice ``index`` and the log-probability entries
                                     of the tokens it completes: (token, log p, [(token, log p)...])
    ("end", index, reason, tokens)   the choice is finished: "stop", "length" or "abort"
"""

import asyncio
import threading
import time

# Seconds between two sends of one request's text, after the first, while at most
# FULL_RATE_STREAMS streams are open; with more, it grows with their number up to the maximum.
STREAM_INTERVAL = 0.02
FULL_RATE_STREAMS = 16
MAX_STREAM_INTERVAL = 0.1


def stream_interval(open_streams):
    """The seconds between one stream's sends when ``open_streams`` are open (~800 sends a second in all)."""
    return min(MAX_STREAM_INTERVAL, STREAM_INTERVAL * max(1.0, open_streams / FULL_RATE_STREAMS))


def _nothing():
    pass


class RequestSink:
    """One request's events, written by the batcher's thread and read by one coroutine."""

    open_streams = 0  # sinks being read now, in this process (only the event loop's thread counts them)

    def __init__(self, loop, choices):
        self.loop, self.choices = loop, choices
        self._lock = threading.Lock()
        self._events = []
        self._woken = False  # a wake-up is on its way for what is in _events
        self._wake = asyncio.Event()
        self._nap = None  # the reader's wait between sends (a future the loop resolves), while it waits
        self._ending = False  # an end event is among _events
        self.cancelled = False  # see cancel()
        self.on_cancel = _nothing  # the batcher's notice (Batcher.submit sets it)

    def cancel(self):
        """The client is gone (or has its answer): the batcher drops the request's rows before its next step."""
        self.cancelled = True
        self.on_cancel()

    def put(self, index, text, entries):
        self._push(("text", index, text, entries))

    def end(self, index, reason, tokens):
        self._push(("end", index, reason, tokens))

    def end_all(self, count, reason):
        for index in range(count):
            self.end(index, reason, 0)

    def _push(self, event):
        with self._lock:
            self._events.append(event)
            wake, self._woken = not self._woken, True
            self._ending |= event[0] == "end"
        try:
            if wake:
                self.loop.call_soon_threadsafe(self._wake.set)
            if event[0] == "end":  # nothing more is coming for this choice: no reason to wait
                self.loop.call_soon_threadsafe(self._end_nap)  # (for a reader already waiting)
        except RuntimeError:  # the event loop is closed: nobody is reading any more
            self.cancel()

    def _end_nap(self):
        """On the event loop: the reader's wait between sends ends now (if it is waiting)."""
        if self._nap is not None and not self._nap.done():
            self._nap.set_result(None)

    async def _wait(self, seconds):
        """asyncio.sleep(seconds), which an end event cuts short (_end_nap)."""
        self._nap = self.loop.create_future()
        timer = self.loop.call_later(seconds, self._end_nap)
        try:
            await self._nap
        finally:
            timer.cancel()
            self._nap = None

    async def batches(self):
        """Lists of events as they arrive, until every choice has ended."""
        ended, sent = 0, None
        RequestSink.open_streams += 1
        try:
            while ended < self.choices:
                interval = stream_interval(RequestSink.open_streams)
                if sent is not None and not self._ending and time.monotonic() - sent < interval:
                    await self._wait(interval - (time.monotonic() - sent))
                await self._wake.wait()
                with self._lock:
                    events, self._events, self._woken, self._ending = self._events, [], False, False
                    self._wake.clear()
                ended += sum(event[0] == "end" for event in events)
                if events:
                    sent = time.monotonic()
                    yield events
        finally:
            RequestSink.open_streams -= 1
