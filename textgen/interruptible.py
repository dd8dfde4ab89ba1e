"""Waits that Ctrl-C and SIGTERM end at once, even while native code is waiting.

Python runs a signal handler only between bytecodes of the main thread, so a
call that waits inside C++ (TensorFlow's cluster start-up: up to the cluster
timeout; TFDS's download retries: minutes) keeps every signal waiting with it.
``run_interruptibly`` makes the call in a worker thread while the main thread
waits in short, interruptible joins: a signal then ends the process at once,
with one line. What the call was doing is abandoned with the process (a
writer lock is the kernel's and goes with it; a staging directory is cleaned
up by the next run).
"""

import os
import signal
import sys
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_interruptibly(function, *, what):
    """``function()``'s result (or its exception), while SIGINT and SIGTERM end the wait at once."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return function()
    outcome = {}

    def work():
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the main thread, raised there
            outcome["error"] = error

    def stop(number, frame):
        print(f"Error: {what} stopped by {signal.Signals(number).name}", file=sys.stderr, flush=True)
        os._exit(128 + number)  # the worker is inside native code: nothing short of this ends it now

    worker = threading.Thread(target=work, name=what, daemon=True)
    previous = {number: signal.signal(number, stop) for number in _SIGNALS}
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
