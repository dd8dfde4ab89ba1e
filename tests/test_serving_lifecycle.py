"""`textgen serve` starting, refusing and stopping: keys, limits, taken ports, SIGTERM mid-stream."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from conftest import run_textgen
from serving_fixtures import live_streams, running_server


def test_starts_without_tensorflow_and_quickly(tiny_model):
    directory, _ = tiny_model
    started = time.monotonic()
    with running_server(str(directory)) as (process, base):
        up = time.monotonic() - started
        modules = httpx.get(f"{base}/health").json()
    assert modules["status"] == "ok"
    # Loose on purpose (a shared CI machine): TensorFlow's import alone takes several seconds.
    assert up < 8, up
    code = "import sys, textgen.serving.server; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_the_key_is_required_when_set(tiny_model):
    directory, _ = tiny_model
    with running_server(str(directory), "--api-key", "sesame") as (process, base):
        wrong = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="a valid API key is required"):
            wrong.models.list()
        with pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model=directory.name, prompt="a", max_tokens=2)
        right = openai.OpenAI(base_url=f"{base}/v1", api_key="sesame", max_retries=0)
        assert right.completions.create(model=directory.name, prompt="a", max_tokens=2).choices[0].text


def test_too_many_streams_is_429_and_the_server_goes_on(slow_model):
    directory = slow_model
    with running_server(str(directory), "--max-streams", "2") as (process, base):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError, match="at most 2 at once"):
            client.completions.create(model=directory.name, prompt="a", max_tokens=5, n=3)
        with pytest.raises(openai.RateLimitError, match="at most 2 at once"):  # 3 hypotheses: 3 rows of work
            client.completions.create(model=directory.name, prompt="a", max_tokens=5, extra_body={"beam_width": 3})
        body = {"model": directory.name, "prompt": "a", "max_tokens": 20000, "stream": True}
        with httpx.stream("POST", f"{base}/v1/completions", json={**body, "n": 2}, timeout=30) as response:
            lines = response.iter_lines()  # held: a dropped iterator closes the connection
            next(lines)
            with pytest.raises(openai.RateLimitError):
                client.completions.create(model=directory.name, prompt="a", max_tokens=5)
        for _ in range(200):
            if live_streams(base, directory.name) == 0:
                break
            time.sleep(0.02)
        assert client.completions.create(model=directory.name, prompt="a", max_tokens=5).choices[0].text


@pytest.mark.parametrize("work", [{"beam_width": 4}, {"n": 4}])  # a beam search; 4 rows of the batch
def test_a_request_that_is_not_streamed_stops_when_its_client_disconnects(slow_model, work):
    """Its rows (or hypotheses) leave the model's count within a step or two, not when the work would
    end (20,000 steps of a 2x1024 LSTM: minutes). Nothing streams, so only the server's own watch
    on the connection can tell."""
    directory = slow_model
    with running_server(str(directory), "--max-streams", "4") as (process, base):
        host, port = base.removeprefix("http://").rsplit(":", 1)
        body = json.dumps({"model": directory.name, "prompt": "a", "max_tokens": 20000, **work})
        request = (
            f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(request.encode())
            deadline = time.monotonic() + 10
            while live_streams(base, directory.name) != 4:  # the search is running
                assert time.monotonic() < deadline
                time.sleep(0.02)
        closed = time.monotonic()
        while live_streams(base, directory.name) != 0:
            assert time.monotonic() - closed < 5, "the work went on after its client left"
            time.sleep(0.02)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)  # all 4 rows free again
        assert client.completions.create(model=directory.name, prompt="a", max_tokens=3, n=4).choices[3].text


def test_sigterm_ends_every_stream_with_a_final_event_and_exits_0(slow_model):
    directory = slow_model
    with running_server(str(directory)) as (process, base):
        endings, started = [], threading.Barrier(11)

        def stream():
            body = {"model": directory.name, "prompt": "a", "max_tokens": 20000, "stream": True}
            with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=60) as response:
                lines = response.iter_lines()
                next(lines)
                started.wait()
                events = [line for line in lines if line.startswith("data: ")]
            endings.append((json.loads(events[-2][6:])["choices"][0]["finish_reason"], events[-1]))

        threads = [threading.Thread(target=stream) for _ in range(10)]
        for thread in threads:
            thread.start()
        started.wait()
        assert live_streams(base, directory.name) == 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        for thread in threads:
            thread.join(timeout=30)
    assert endings == [("abort", "data: [DONE]")] * 10


def test_sigterm_stops_a_beam_search_in_flight_and_exits_0(slow_model):
    """A beam search of 20,000 steps (minutes) held the graceful stop until it ended."""
    directory = slow_model
    with running_server(str(directory)) as (process, base):
        answers = []

        def search():
            body = {"model": directory.name, "prompt": "a", "max_tokens": 20000, "beam_width": 4, "n": 2}
            answers.append(httpx.post(f"{base}/v1/completions", json=body, timeout=60).json())

        thread = threading.Thread(target=search)
        thread.start()
        deadline = time.monotonic() + 10
        while live_streams(base, directory.name) != 4:  # the search is running
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        thread.join(timeout=15)
    assert [choice["finish_reason"] for choice in answers[0]["choices"]] == ["abort", "abort"]


def test_a_public_address_without_a_key_is_refused(tiny_model):
    directory, _ = tiny_model
    result = run_textgen("serve", str(directory), "--host", "0.0.0.0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: serving on 0.0.0.0 reaches other machines; set a key with --api-key or TEXTGEN_API_KEY, "
        "or serve on 127.0.0.1"
    ]


def test_a_taken_port_is_one_line(tiny_model):
    directory, _ = tiny_model
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_textgen("serve", str(directory), "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_no_model_and_a_bad_model_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "textgen", "serve"], capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert result.returncode == 1 and result.stderr.startswith("Error: no saved model under")
    (tmp_path / "junk").mkdir()
    result = run_textgen("serve", str(tmp_path / "junk"))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1


def test_many_open_streams_send_less_often_each_and_closed_ones_stop_counting():
    import asyncio
    import contextlib

    from textgen.serving.stream_sink import MAX_STREAM_INTERVAL, STREAM_INTERVAL, RequestSink, stream_interval

    assert stream_interval(1) == stream_interval(16) == STREAM_INTERVAL  # 50 pieces a second each
    assert stream_interval(64) == pytest.approx(4 * STREAM_INTERVAL)  # ~800 a second in all
    assert stream_interval(10_000) == MAX_STREAM_INTERVAL  # never less than 10 a second

    async def scenario():
        loop = asyncio.get_running_loop()
        sinks = [RequestSink(loop, choices=1) for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            readers = [await stack.enter_async_context(contextlib.aclosing(sink.batches())) for sink in sinks]
            sinks[0].put(0, "a", None)
            first = await readers[0].__anext__()  # reading: the stream is open
            sinks[1].put(0, "b", None)
            await readers[1].__anext__()
            opened = RequestSink.open_streams
            sinks[0].end(0, "stop", 1)
            assert [event async for event in readers[0]] == [[("end", 0, "stop", 1)]]  # finished
            after_one_ended = RequestSink.open_streams
        return first, opened, after_one_ended, RequestSink.open_streams  # the rest closed mid-stream

    first, opened, after_one_ended, at_the_end = asyncio.run(scenario())
    assert first == [("text", 0, "a", None)]
    assert (opened, after_one_ended, at_the_end) == (2, 1, 0)


def test_a_choices_end_goes_out_at_once_not_an_interval_after_its_text(monkeypatch):
    import asyncio
    import contextlib
    import threading

    from textgen.serving import stream_sink

    monkeypatch.setattr(stream_sink, "STREAM_INTERVAL", 60.0)  # a wait that would outlast the test
    monkeypatch.setattr(stream_sink, "MAX_STREAM_INTERVAL", 60.0)

    async def scenario():
        sink = stream_sink.RequestSink(asyncio.get_running_loop(), choices=2)
        async with contextlib.aclosing(sink.batches()) as reader:
            sink.put(0, "a", ())
            first = await reader.__anext__()  # sent at once; the next send would wait 60 s
            sink.put(0, "b", ())
            sink.end(0, "length", 2)  # the end already waiting as the reader comes back
            ended_first = await asyncio.wait_for(reader.__anext__(), 5)
            sink.put(1, "c", ())
            waiting = asyncio.ensure_future(reader.__anext__())
            await asyncio.sleep(0.05)  # the reader is in its wait now, holding "c" back
            held_back = not waiting.done()
            writer = threading.Thread(target=sink.end, args=(1, "stop", 1))  # as the batcher's thread ends it
            writer.start()
            ended_second = await asyncio.wait_for(waiting, 5)
            writer.join()
        return first, ended_first, held_back, ended_second

    first, ended_first, held_back, ended_second = asyncio.run(scenario())
    assert first == [("text", 0, "a", ())]
    assert ended_first == [("text", 0, "b", ()), ("end", 0, "length", 2)]
    assert held_back  # text alone still waits its interval
    assert ended_second == [("text", 1, "c", ()), ("end", 1, "stop", 1)]


def test_a_server_leaves_its_start_up_objects_out_of_full_collections():
    # A full collection walked every object the process held (11-22 ms here), stopping the event
    # loop and the batcher together; serve() freezes what start-up made before it serves, after
    # freeing start-up's garbage (a frozen object is never freed).
    import gc
    import weakref

    from textgen.serving.server import _freeze_start_up_objects

    class Node:
        pass

    cycle = Node()
    cycle.itself = cycle  # garbage only a collection frees
    garbage = weakref.ref(cycle)
    del cycle
    try:
        _freeze_start_up_objects()
        frozen, walked = gc.get_freeze_count(), len(gc.get_objects())
    finally:
        gc.unfreeze()
    assert garbage() is None  # collected, not frozen
    assert frozen > 1000 and walked < frozen  # start-up's objects out of the collections' walk
