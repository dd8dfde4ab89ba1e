"""The HTTP floor of a first character: uvicorn answering each completion request at once, no model.

A bare ASGI application on the same server `textgen serve` runs (uvicorn, which takes httptools and
uvloop where installed, with the same settings): it reads the request's body and sends one
server-sent event of one character and ``data: [DONE]``. What a load of N clients measures against
it (serve_load.py, the same client code) is what the HTTP path alone costs on this machine, its
cores shared with the load process: the floor under any Python server's time to a first character.

    python benchmarks/http_floor.py     prints "the API at http://127.0.0.1:PORT/v1", serves until killed
"""

import json
import socket

import uvicorn

# One completion chunk of one character, then the end: what a first character looks like on the wire.
_EVENTS = (
    "data: " + json.dumps({"object": "text_completion", "choices": [{"index": 0, "text": "x", "finish_reason": None}]})
).encode() + b"\n\ndata: [DONE]\n\n"
_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def answer_at_once(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:  # the whole body, as a server must read it before it can answer
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _EVENTS, "more_body": True})  # streamed, as textgen's
    await send({"type": "http.response.body", "body": b""})


def main():
    listening = socket.create_server(("127.0.0.1", 0))
    print(f"the API at http://127.0.0.1:{listening.getsockname()[1]}/v1", flush=True)
    uvicorn.Server(uvicorn.Config(answer_at_once, log_level="warning", lifespan="off")).run(sockets=[listening])


if __name__ == "__main__":
    main()
