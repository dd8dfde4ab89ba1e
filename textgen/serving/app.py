"""The HTTP application: OpenAI's routes over the catalog's models, and the playground.

    GET  /                      the playground (playground/index.html and its files)
    GET  /health                {"status": "ok", "models": [...]}
    GET  /v1/models             OpenAI's model list
    POST /v1/completions        a completion, or with "stream": true server-sent events
    POST /v1/chat/completions   the same for chat messages

Streams are server-sent events: ``data: {json}`` per chunk and ``data: [DONE]``
at the end, written with Starlette's StreamingResponse. When a client goes
away, Starlette cancels the stream and the ``finally`` below tells the batcher,
which drops the rows before its next step.
"""

import asyncio
import contextlib
import hmac
import json
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from textgen.errors import TextgenError
from textgen.limits import MAX_REQUEST_BYTES
from textgen.serving.openai_requests import RequestRefused, parse_completion, read_json, too_large
from textgen.serving.responses import Answer, error_body
from textgen.serving.stream_sink import RequestSink

PLAYGROUND = Path(__file__).resolve().parent / "playground"


def _refusal(error):
    body = error_body(str(error), kind=error.kind, param=error.param, code=error.code)
    return JSONResponse(body, status_code=error.status)


async def _body(request):
    """The request's bytes, refused from its Content-Length or as soon as more than the limit arrived."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise too_large(int(declared))
    pieces, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > MAX_REQUEST_BYTES:
            raise too_large(size)
        pieces.append(piece)
    return b"".join(pieces)


def _sse(data):
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class Routes:
    """The handlers, over one catalog and an optional API key."""

    def __init__(self, catalog, api_key):
        self.catalog, self.api_key = catalog, api_key

    def check_key(self, request):
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
            raise RequestRefused(
                "a valid API key is required: Authorization: Bearer KEY (the key `textgen serve` was started with)",
                status=401,
                code="invalid_api_key",
            )

    async def health(self, request):
        models = {
            model_id: {"streams": model.batcher.streams, "steps": model.batcher.steps}
            for model_id, model in self.catalog.models.items()
        }
        return JSONResponse({"status": "ok", "models": models})

    async def models(self, request):
        self.check_key(request)
        listed = [
            {"id": model.id, "object": "model", "created": model.created, "owned_by": "textgen"}
            for model in self.catalog.models.values()
        ]
        return JSONResponse({"object": "list", "data": listed})

    async def completions(self, request):
        return await self._complete(request, chat=False)

    async def chat_completions(self, request):
        return await self._complete(request, chat=True)

    async def _complete(self, request, *, chat):
        self.check_key(request)
        completion = parse_completion(read_json(await _body(request)), chat=chat)
        model = self.catalog.get(completion.model)
        if model is None:
            raise RequestRefused(
                f"the model {completion.model!r} does not exist; served: {', '.join(self.catalog.models)}",
                param="model",
                status=404,
                code="model_not_found",
            )
        try:
            ids = model.generator.prompt_ids(completion.settings.prompt)
        except TextgenError as error:
            raise RequestRefused(str(error), param="messages" if chat else "prompt") from None
        answer = Answer(completion, model.id, len(ids) if completion.settings.prompt else 0)
        if completion.settings.beam_width > 1:
            return await self._beams(request, model, completion, answer)
        sink = RequestSink(asyncio.get_running_loop(), completion.choices)
        model.batcher.submit(completion, ids, sink)
        if completion.stream:
            return StreamingResponse(self._stream(answer, sink), media_type="text/event-stream")
        collecting = asyncio.ensure_future(_collect(answer, sink))
        if not await _done_unless_gone(request, collecting, collecting.cancel):
            return Response(status_code=499)  # nobody reads it: nginx's "client closed request"
        return JSONResponse(answer.whole())

    async def _stream(self, answer, sink):
        try:
            async with contextlib.aclosing(sink.batches()) as batches:
                async for events in batches:
                    yield "".join(_sse(chunk) for chunk in answer.take(events))
            if answer.completion.include_usage:
                yield _sse(answer.usage_chunk())
            yield "data: [DONE]\n\n"
        finally:
            sink.cancel()

    async def _beams(self, request, model, completion, answer):
        """Beam search runs on its own (it keeps whole continuations, not one row per stream); its
        hypotheses count against the model's streams while it runs, and it stops at its next step
        when the client disconnects."""
        rows = max(completion.settings.beam_width, completion.choices)  # the hypotheses it keeps at each step
        model.batcher.reserve(rows)  # refused (503) once the server is stopping
        cancel = threading.Event()
        self.catalog.searches.add(cancel)  # a stop sets it (the search stops at its next step)
        if self.catalog.stopping:
            cancel.set()
        search = asyncio.ensure_future(asyncio.to_thread(model.generator.sample, completion.settings, cancel=cancel))
        try:
            if not await _done_unless_gone(request, search, cancel.set):
                return Response(status_code=499)
        finally:
            self.catalog.searches.discard(cancel)
            model.batcher.release(rows)
        chunks = []  # one per choice: its whole text (with the prompt where echo asks) and its finish_reason
        for index, sample in enumerate(search.result()):
            finish = "stop" if sample.stopped else "length"
            chunks += answer.take([("text", index, sample.text, []), ("end", index, finish, sample.tokens)])
        if cancel.is_set():  # the server is stopping: no beams, every choice ends "abort", as streams do
            chunks = answer.take([("end", index, "abort", 0) for index in range(completion.choices)])
        if not completion.stream:
            return JSONResponse(answer.whole())

        async def replay():
            for chunk in chunks:
                yield _sse(chunk)
            if completion.include_usage:
                yield _sse(answer.usage_chunk())
            yield "data: [DONE]\n\n"

        return StreamingResponse(replay(), media_type="text/event-stream")


async def _collect(answer, sink):
    """A whole answer's events into ``answer``."""
    try:
        async with contextlib.aclosing(sink.batches()) as batches:  # closed here: it counts open streams
            async for events in batches:
                answer.take(events)
    finally:
        sink.cancel()  # finished, or the client is gone: either way the rows may go


async def _done_unless_gone(request, work, stop):
    """True once ``work`` (a future) is done; if the client disconnects first, ``stop()``, the
    work's end awaited, and False. A handler that is not streaming hears of no disconnect itself:
    its rows, or its beam search, would go on to the end for nobody."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if work.done():
        work.result()  # its refusal, if any, is the request's
        return True
    stop()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    return False


async def _disconnected(request):
    """Returns once the client has gone: with the body read whole, the next message is a disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _refused(request, error):
    return _refusal(error)


async def _http_error(request, error):
    """Starlette's own refusals (an unknown route, a wrong method) in OpenAI's error shape."""
    return JSONResponse(error_body(str(error.detail), code=error.status_code), status_code=error.status_code)


async def _playground(request):
    return FileResponse(PLAYGROUND / "index.html")


def build_app(catalog, *, api_key=None):
    """The Starlette application serving ``catalog``; ``api_key``: required on /v1/ when set."""
    routes = Routes(catalog, api_key)
    return Starlette(
        routes=[
            Route("/", _playground),
            Route("/health", routes.health),
            Route("/v1/models", routes.models),
            Route("/v1/completions", routes.completions, methods=["POST"]),
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            Mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground"),
        ],
        exception_handlers={RequestRefused: _refused, HTTPException: _http_error},
    )
