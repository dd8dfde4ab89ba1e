"""`textgen serve`: load the models, bind the address, print where to go, serve until told to stop.

uvicorn runs the application. The socket is bound here first, so a taken port
is one line before anything starts, and port 0 (any free one) prints the port
it got. Ctrl-C and SIGTERM stop uvicorn gracefully: it stops accepting, every
stream in flight gets its final event (finish_reason "abort") and
``data: [DONE]``, and the process exits 0.
"""

import gc
import ipaddress
import os
import signal
import socket

import uvicorn

from textgen.errors import TextgenError
from textgen.limits import DEFAULT_MAX_STREAMS
from textgen.serving.app import build_app
from textgen.serving.catalog import Catalog

API_KEY_VARIABLE = "TEXTGEN_API_KEY"


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host, port):
    if not 0 <= port <= 65535:
        raise TextgenError(f"port must be from 0 to 65535, got {port}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)  # without create_server's wrapping
        raise TextgenError(f"cannot listen on {host}:{port}: {reason}") from None


def _url(host, port):
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _freeze_start_up_objects():
    """Leave what the imports and the models made out of Python's full garbage collections. Such a
    collection walks every object the process holds (~34,000 here after start: 11-22 ms on these
    cores) with the interpreter lock held, so it stopped the event loop and the batcher together: one
    in a burst of 16 held the last 6 back 17-30 ms. Frozen, a full collection walks only what serving
    made since (gc.freeze); serve() unfreezes them when it returns, for a caller that goes on."""
    gc.collect()  # start-up's garbage first: frozen objects are never freed
    gc.freeze()


class Server(uvicorn.Server):
    """uvicorn's server, which also ends every stream when told to stop (so that its connections close)."""

    def __init__(self, config, catalog):
        super().__init__(config)
        self.catalog = catalog

    def handle_exit(self, sig, frame):
        self.catalog.request_stop()
        super().handle_exit(sig, frame)


def serve(models=(), *, host="127.0.0.1", port=8000, api_key=None, max_streams=DEFAULT_MAX_STREAMS, echo=print):
    """Serve the model directories ``models`` (default: every model under ./saved_models) until
    Ctrl-C or SIGTERM. ``api_key`` (default: $TEXTGEN_API_KEY) is then required on the API."""
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_VARIABLE) or None
    if not _is_loopback(host) and api_key is None:
        raise TextgenError(
            f"serving on {host} reaches other machines; set a key with --api-key or {API_KEY_VARIABLE}, "
            "or serve on 127.0.0.1"
        )
    if not 1 <= max_streams <= 65536:
        raise TextgenError(f"max-streams must be from 1 to 65536, got {max_streams}")
    catalog = Catalog(models, max_rows=max_streams)
    listening = _bind(host, port)
    address = _url(host, listening.getsockname()[1])
    config = uvicorn.Config(build_app(catalog, api_key=api_key), log_level="warning", lifespan="off")
    server = Server(config, catalog)
    echo(f"serving {', '.join(catalog.models)}: the playground at {address}/, the API at {address}/v1")
    echo("Ctrl-C or SIGTERM stops it" + ("; the API needs the key" if api_key else ""))
    # uvicorn raises a captured signal again once it has stopped; here that signal should only end
    # the serve, not the process (exit 0), so nothing of ours is left to answer it.
    previous = {number: signal.signal(number, lambda *_: None) for number in (signal.SIGINT, signal.SIGTERM)}
    _freeze_start_up_objects()
    try:
        server.run(sockets=[listening])
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        catalog.stop()
        listening.close()
        gc.unfreeze()
