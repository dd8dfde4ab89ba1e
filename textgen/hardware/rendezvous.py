"""Wait for a cluster's other workers in Python, where Ctrl-C and SIGTERM are heard.

MultiWorkerMirroredStrategy's start-up waits in C++ for every task of TF_CONFIG
to register, holding the interpreter, and it first installs a SIGTERM handler of
its own (TensorFlow's preemption notifier, which logs the signal and carries on).
A worker waiting there for a machine that never starts ignored SIGTERM until the
cluster timeout. So before TensorFlow is asked, each worker waits here until every
other task's port answers:

    1. it listens on its own port (the one TF_CONFIG gives it, which TensorFlow's
       server takes over a moment later), so the others can see it has started;
    2. it connects to each other task's port, again and again, until each answers
       (their listener from step 1, or their TensorFlow server if they are past it).

No one has to accept: the kernel completes a connection to a listening socket by
itself. The waiting is a Python loop of short waits, so the CLI's own handlers run:
SIGTERM is "Terminated" (exit 143) and Ctrl-C "Interrupted" (130), at once. What is
left to TensorFlow is a wait for workers that are all known to be up.
"""

import socket
import threading
import time

from textgen.errors import TextgenError

RETRY_SECONDS = 0.2  # between one worker's connection attempts to a task that has not answered
CONNECT_SECONDS = 1.0  # one attempt's limit: a host that drops packets does not hold the loop
STOP_HINT = "Ctrl-C or SIGTERM stops it at once"
POLL_SECONDS = 0.1  # how often the main thread looks up: the longest a signal waits to be heard


def split_address(address):
    """("host", port) of "host:port" or "[v6]:port"."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def wait_for_cluster(cluster, timeout, *, echo=print):
    """Return once every other task of ``cluster`` answers on its port; one line after ``timeout`` seconds.

    Raises:
        TextgenError: this worker's own port is taken, or a task did not answer in time.
    """
    others = [address for role, index, address in cluster.tasks if (role, index) != (cluster.role, cluster.index)]
    listener = _listen(cluster.address)
    echo(f"waiting up to {timeout} s for the cluster's other workers ({', '.join(others)}); {STOP_HINT}")
    answered = {address: threading.Event() for address in others}
    stop = threading.Event()
    # One daemon thread per task: a name lookup or a connection can block for seconds in C,
    # where the main thread would not hear a signal; here it only waits on events.
    for address, event in answered.items():
        threading.Thread(target=_knock, args=(address, event, stop), daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while not all(event.is_set() for event in answered.values()):
            if time.monotonic() > deadline:
                missing = ", ".join(address for address, event in answered.items() if not event.is_set())
                raise TextgenError(
                    f"the cluster did not come up within {timeout} s: no answer from {missing} "
                    "(is every worker started, with the same TF_CONFIG cluster?)"
                )
            time.sleep(POLL_SECONDS)  # a signal interrupts the sleep and its handler runs
    finally:
        stop.set()
        listener.close()  # TensorFlow's server binds this port next


def _listen(address):
    """A socket listening on ``address``'s port on every interface, as TensorFlow's server will."""
    _, port = split_address(address)
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64)
        return socket.create_server(("", port), backlog=64)
    except OSError as error:
        raise TextgenError(
            f"this worker could not join the cluster at {address}: port {port} cannot be listened on "
            f"({error.strerror or error}); is another program using it?"
        ) from None


def _knock(address, answered, stop):
    """Connect to ``address`` until it answers (then set ``answered``) or ``stop`` is set."""
    host, port = split_address(address)
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=CONNECT_SECONDS) as connection:
                # TCP's self-connection: on one host, a knock on a port nobody listens on yet can be
                # given that very port as its own and "connect" to itself, which holds the port the
                # peer is about to listen on (a test's three workers on loopback hit it in CI).
                if connection.getsockname() != connection.getpeername():
                    answered.set()
                    return
        except OSError:  # refused (not started yet), unreachable, unknown host: try again
            pass
        stop.wait(RETRY_SECONDS)
