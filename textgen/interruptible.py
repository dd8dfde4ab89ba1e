"""Waits in native code that Ctrl-C and SIGTERM end at once.

Python runs a signal handler only between bytecodes of the main thread, and
textgen's handlers (a clean stop after the current batch; the CLI's one-line
"Terminated") are Python. A call that waits inside C++ while holding the
interpreter (TensorFlow's multi-worker start-up waits for every worker, up to
the cluster timeout) keeps every signal waiting with it: SIGTERM was ignored
for two minutes. Running the call in a thread does not help, since it holds
the interpreter there too (measured: the main thread never ran again until the
call returned). So for the length of such a wait ``native_wait`` gives SIGINT
and SIGTERM back to the kernel's default action, which ends the process at
once, wherever it is; the line it prints first says so. What the wait was
for is abandoned with the process: the writer lock is the kernel's and goes
with it, and a staging directory is cleaned up by the next run.

One exception is TensorFlow's own: MultiWorkerMirroredStrategy's start-up
installs a SIGTERM handler of its own (its preemption notifier, TF 2.21), which
logs the signal and carries on. So a multi-worker run first waits for the other
workers in Python (hardware/rendezvous.py), where SIGTERM is heard, and leaves
TensorFlow only the moment in which workers known to be up register.
"""

import contextlib
import signal
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def native_wait(what, *, echo=print):
    """A block during which SIGINT and SIGTERM end the process at once; ``what`` is announced first (by ``echo``)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    if echo:
        echo(f"{what}; Ctrl-C or SIGTERM stops it at once")
    previous = {number: signal.signal(number, signal.SIG_DFL) for number in _SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
