"""TensorFlow's own log lines: off unless asked for (``textgen --verbose`` or ``TEXTGEN_VERBOSE=1``).

TensorFlow's C++ side writes to the process's stderr as it loads: "Could not
find cuda drivers on your machine", "failed call to cuInit: ... UNKNOWN ERROR
(303)" (an ``E0000`` line that reads like a failure), "This TensorFlow binary
is optimized to use available CPU instructions ... rebuild TensorFlow". None
of it is a textgen user's to act on.

Two switches turn it off. ``TF_CPP_MIN_LOG_LEVEL=3`` silences TensorFlow's
logger, its "errors" included: the cuInit one comes later, when the first
operation runs, and a real failure still arrives as a Python exception (a
user's own value wins). Abseil, underneath, prints its lines
before any level is set (abseil-cpp#1570: no setting reaches them), so the
moments that print them (importing TensorFlow, asking for its devices) run
with file descriptor 2 pointed at /dev/null; Python errors are exceptions and
still reach the user.
"""

import contextlib
import os
import sys

VERBOSE_VARIABLE = "TEXTGEN_VERBOSE"


def verbose():
    return os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0")


@contextlib.contextmanager
def quiet_native_logs():
    """Silence TensorFlow's native start-up log inside this block (nothing changes when verbose)."""
    if verbose():
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr to protect (a daemon, a test harness)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
