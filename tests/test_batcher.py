"""The server's batching loop in one process: a batch that mixes every kind of row writes what each
row would write alone, and plain rows' text goes out in few pieces (serving/batcher.py)."""

import asyncio
import time

import numpy as np
import pytest

import textgen
from textgen.serving import arrivals as arrivals_module
from textgen.serving import batcher as batcher_module
from textgen.serving import prompt_reading
from textgen.serving.arrivals import QUIET_TURNS, Arrivals
from textgen.serving.batcher import Batcher
from textgen.serving.openai_requests import parse_completion
from textgen.serving.row_sampling import DRAW_BLOCK, RowDraws
from textgen.serving.stream_sink import RequestSink


class _Row:
    def __init__(self, seed, draws=True):
        self.seed, self.rng, self.draws = seed, np.random.default_rng(seed), draws


def test_row_draws_are_each_generators_own_numbers_whenever_a_row_joins():
    draws, rows, taken = RowDraws(), [], {}
    joins = {0: [1, 2], 5: [3], DRAW_BLOCK - 1: [4], DRAW_BLOCK: [5], DRAW_BLOCK + 7: [6]}
    for step in range(3 * DRAW_BLOCK):
        new = [_Row(seed) for seed in joins.get(step, [])]
        if new:
            draws.join(new)
            rows += new
        for row, value in zip(rows, draws.next(rows)):
            taken.setdefault(row.seed, []).append(value)
        if step == 40:  # the row of seed 3 leaves; the others keep their places in their sequences
            keep = np.array([row is not rows[2] for row in rows])
            draws.keep(keep)
            rows = [row for row, kept in zip(rows, keep) if kept]
    assert [row.seed for row in rows] == [1, 2, 4, 5, 6]
    for row in rows:
        values = taken[row.seed]
        assert values == np.random.default_rng(row.seed).random(len(values)).tolist()


def test_a_greedy_row_draws_nothing():
    draws, row = RowDraws(), _Row(9, draws=False)
    draws.join([row])
    assert [draws.next([row])[0] for _ in range(DRAW_BLOCK + 3)] == [0.0] * (DRAW_BLOCK + 3)
    assert row.rng.random() == np.random.default_rng(9).random()  # its generator untouched


def _request(prompt, **fields):
    return parse_completion({"model": "m", "prompt": prompt, **fields}, chat=False)


async def _run(batcher, generator, requests, join_after):
    """Submit ``requests`` (completions) one after another, each ``join_after`` events of the first
    into its stream (so rows join a batch that is writing); returns each one's events."""
    loop = asyncio.get_running_loop()
    sinks = [RequestSink(loop, completion.choices) for completion in requests]
    events = [[] for _ in requests]

    async def read(number):
        async for batch in sinks[number].batches():
            events[number] += batch

    readers = []
    for number, completion in enumerate(requests):
        batcher.submit(completion, generator.prompt_ids(completion.settings.prompt), sinks[number])
        readers.append(asyncio.create_task(read(number)))
        while len(events[0]) < join_after * number and not readers[0].done():
            await asyncio.sleep(0.001)
    await asyncio.gather(*readers)
    return events


def _texts(events, choices):
    texts = [""] * choices
    for event in events:
        if event[0] == "text":
            texts[event[1]] += event[2]
    return texts


@pytest.fixture
def loaded(tiny_model):
    directory, _ = tiny_model
    generator = textgen.load(directory, engine="numpy")
    batcher = Batcher(generator, max_rows=64)
    yield generator, batcher
    batcher.stop()


def test_a_mixed_batch_writes_what_each_row_writes_alone(loaded):
    generator, batcher = loaded
    alone = generator.generate("The ", length=600, temperature=0.8, seed=7)[4:]
    stop = alone[300:302]
    requests = [
        _request("The ", max_tokens=600, temperature=0.8, seed=7),  # plain, past one block of draws
        _request("a", max_tokens=40, temperature=0, seed=1),  # greedy
        _request("The ", max_tokens=600, temperature=0.8, seed=7, stop=[stop]),  # watched: a stop string
        _request("We", max_tokens=300, top_k=5, seed=3, logprobs=2),  # watched: log-probabilities
        _request("We", max_tokens=350, temperature=0.9, seed=4, n=3),  # three rows, one request
    ]
    events = asyncio.run(_run(batcher, generator, requests, join_after=2))
    texts = [_texts(found, completion.choices) for found, completion in zip(events, requests)]
    assert texts[0] == [alone]
    assert texts[1] == [generator.generate("a", length=40, temperature=0, seed=1)[1:]]
    assert texts[2] == [alone[: alone.index(stop)]]
    assert texts[3] == [generator.generate("We", length=300, top_k=5, seed=3)[2:]]
    assert texts[4][0] == generator.generate("We", length=350, temperature=0.9, seed=4)[2:]
    assert len(set(texts[4])) == 3 and all(len(text) == 350 for text in texts[4])
    entries = [entry for event in events[3] if event[0] == "text" for entry in event[3]]
    assert "".join(entry[0] for entry in entries) == texts[3][0] and all(len(entry[2]) == 2 for entry in entries)
    ends = [[event[1:] for event in found if event[0] == "end"] for found in events]
    assert ends[0] == [(0, "length", 600)] and ends[2][0][1] == "stop"
    assert sorted(ends[4]) == [(0, "length", 350), (1, "length", 350), (2, "length", 350)]
    assert batcher.streams == 0


def test_a_plain_rows_text_goes_out_at_its_first_step_and_its_end(loaded, monkeypatch):
    # With the hand-out's clock out of the way, a lone plain row is handed out twice: its first
    # character (the time to the first character) and, at its last step, all the rest.
    monkeypatch.setattr(batcher_module, "HAND_OUT_SECONDS", 1e6)
    generator, batcher = loaded
    (events,) = asyncio.run(_run(batcher, generator, [_request("The ", max_tokens=2000, seed=5)], join_after=0))
    pieces = [event[2] for event in events if event[0] == "text"]
    assert [len(piece) for piece in pieces] == [1, 1999]
    assert events[-1] == ("end", 0, "length", 2000)


def test_prompts_of_every_length_read_together_write_what_each_writes_alone(loaded, text, monkeypatch):
    # Submitted at once, they are read as batches; the 700-character prompt over several turns
    # (PROMPT_PIECE tokens in all per turn), while the short ones are already writing.
    generator, batcher = loaded
    batches, pieces, run = [], [], batcher.engine.run  # pieces: (tokens in sequence, rows writing) of each run

    def recorded(tokens, state):
        batches.append(len(tokens))
        pieces.append((tokens.shape[1], len(batcher.rows)))
        return run(tokens, state)

    monkeypatch.setattr(batcher.engine, "run", recorded)
    prompts = ["T", "The ", text[:37], text[100:800], "We", "a"]
    requests = [_request(prompt, max_tokens=120, temperature=0.9, seed=number) for number, prompt in enumerate(prompts)]
    events = asyncio.run(_run(batcher, generator, requests, join_after=0))
    for number, prompt in enumerate(prompts):
        alone = generator.generate(prompt, length=120, temperature=0.9, seed=number)[len(prompt) :]
        assert _texts(events[number], 1) == [alone], prompt[:10]
    assert max(batches) >= 2  # read together, not one prompt after another
    beside_writers = [piece for piece, writing in pieces if writing]
    assert len(beside_writers) >= 40  # the 700 characters a short piece at a time, beside the streams writing
    assert max(beside_writers) <= prompt_reading.PROMPT_STEPS_WHILE_WRITING < prompt_reading.PROMPT_PIECE


async def _read_all(sink):
    return [event async for batch in sink.batches() for event in batch]


def test_a_burst_of_requests_goes_to_the_batcher_whole_once_the_event_loop_has_read_it():
    handed_over = []
    arrivals = Arrivals(handed_over.append)

    async def scenario():
        loop = asyncio.get_running_loop()
        for job in range(5):  # five handlers, one turn of the loop after another
            arrivals.arrived(loop, job)
            await asyncio.sleep(0)
        burst = list(handed_over)
        for _ in range(QUIET_TURNS + 1):
            await asyncio.sleep(0)
        arrivals.arrived(loop, "alone")
        for _ in range(QUIET_TURNS + 1):
            await asyncio.sleep(0)
        return burst

    assert asyncio.run(scenario()) == []  # nothing while the requests kept coming
    assert handed_over == [[0, 1, 2, 3, 4], ["alone"]]  # the burst whole, then a lone one a few turns on


def test_a_job_left_on_a_closed_event_loop_goes_over_with_the_next_loops_first():
    handed_over = []
    arrivals = Arrivals(handed_over.append)

    closed = asyncio.new_event_loop()
    arrivals.arrived(closed, "left")
    closed.close()  # before its next turn: the check never runs
    assert handed_over == []

    async def arrive_and_wait(job):
        arrivals.arrived(asyncio.get_running_loop(), job)
        for _ in range(QUIET_TURNS + 1):
            await asyncio.sleep(0)

    asyncio.run(arrive_and_wait("next"))
    assert handed_over == [["left", "next"]]


def test_requests_that_never_stop_coming_do_not_hold_back_the_first_ones(monkeypatch):
    monkeypatch.setattr(arrivals_module, "MOST_SECONDS", 0.05)
    handed_over = []
    arrivals = Arrivals(handed_over.append)

    async def scenario():
        loop, started = asyncio.get_running_loop(), time.monotonic()
        job = 0
        while not handed_over and time.monotonic() - started < 5:  # one arrival every turn
            arrivals.arrived(loop, job)
            job += 1
            await asyncio.sleep(0)
        return time.monotonic() - started

    waited = asyncio.run(scenario())
    assert handed_over and handed_over[0][0] == 0 and 0.05 <= waited < 1


def test_requests_of_one_burst_are_read_as_one_batch(loaded, monkeypatch):
    generator, batcher = loaded
    asyncio.run(_run(batcher, generator, [_request("a", max_tokens=1)], join_after=0))  # the loop started
    batches, run = [], batcher.engine.run
    monkeypatch.setattr(batcher.engine, "run", lambda tokens, state: batches.append(len(tokens)) or run(tokens, state))
    requests = [_request("The ", max_tokens=5, seed=number) for number in range(12)]

    async def burst():  # submitted by handlers in turns of the event loop one after another, as a burst's are
        loop = asyncio.get_running_loop()
        sinks = [RequestSink(loop, 1) for _ in requests]
        for completion, sink in zip(requests, sinks):
            batcher.submit(completion, generator.prompt_ids("The "), sink)
            time.sleep(0.002)  # the rest of the handler's work, while the batcher's thread may run
            await asyncio.sleep(0)  # the next handler in the next turn of the loop
        return [await _read_all(sink) for sink in sinks]

    events = asyncio.run(burst())
    assert batches == [12]
    assert all(found[-1] == ("end", 0, "length", 5) for found in events)


def test_a_request_still_on_the_event_loop_when_the_batcher_stops_gets_its_final_event(loaded):
    generator, batcher = loaded

    async def scenario():
        sink = RequestSink(asyncio.get_running_loop(), 2)
        batcher.submit(_request("The ", max_tokens=50, n=2), generator.prompt_ids("The "), sink)
        batcher.stop()  # before the event loop's next turn hands the job over
        return await _read_all(sink)

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [("end", 0, "abort", 0), ("end", 1, "abort", 0)]
