"""`textgen serve` through the official `openai` Python client, against a real server process."""

import json
import math
import socket
import threading

import httpx
import openai
import pytest
from serving_fixtures import live_streams, running_server

import textgen


@pytest.fixture(scope="module")
def server(tiny_model, slow_model):
    directory, _ = tiny_model
    with running_server(str(directory), str(slow_model)) as (process, base):
        yield base, directory.name, directory


@pytest.fixture(scope="module")
def client(server):
    base, _, _ = server
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)


def test_models_lists_each_served_directory_by_name(client, server, slow_model):
    _, model_id, _ = server
    assert [model.id for model in client.models.list()] == [model_id, slow_model.name]


def test_a_completion_writes_max_tokens_characters_and_counts_them(client, server):
    _, model_id, _ = server
    result = client.completions.create(model=model_id, prompt="The ", max_tokens=40, seed=3)
    choice = result.choices[0]
    assert len(choice.text) == 40 and choice.finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 40)


def test_a_seeded_completion_is_the_text_textgen_sample_writes(client, server):
    _, model_id, directory = server
    result = client.completions.create(model=model_id, prompt="The ", max_tokens=60, temperature=0.8, seed=11)
    expected = textgen.load(directory).generate("The ", length=60, temperature=0.8, seed=11)
    assert "The " + result.choices[0].text == expected


def test_a_stream_arrives_in_pieces_that_join_to_the_whole_text(client, server):
    _, model_id, _ = server
    whole = client.completions.create(model=model_id, prompt="a", max_tokens=80, seed=5).choices[0].text
    chunks = list(client.completions.create(model=model_id, prompt="a", max_tokens=80, seed=5, stream=True))
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == whole
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(chunk.choices[0].finish_reason is None for chunk in chunks[:-1])


def test_n_choices_and_seeds_while_other_streams_write(client, server):
    _, model_id, _ = server
    alone = client.completions.create(model=model_id, prompt="We", max_tokens=50, n=3, seed=21)
    assert [choice.index for choice in alone.choices] == [0, 1, 2]
    assert len({choice.text for choice in alone.choices}) == 3  # each choice draws its own
    # The same request again, while eight other streams share the batch: the same texts.
    others = [
        threading.Thread(target=lambda: client.completions.create(model=model_id, prompt="a", max_tokens=300))
        for _ in range(8)
    ]
    for thread in others:
        thread.start()
    again = client.completions.create(model=model_id, prompt="We", max_tokens=50, n=3, seed=21)
    for thread in others:
        thread.join()
    assert [choice.text for choice in again.choices] == [choice.text for choice in alone.choices]


def test_stop_strings_end_the_text_before_them(client, server):
    _, model_id, _ = server
    free = client.completions.create(model=model_id, prompt="The", max_tokens=200, seed=2).choices[0].text
    stop = free[20:22]  # two characters this seed writes
    stopped = client.completions.create(model=model_id, prompt="The", max_tokens=200, seed=2, stop=[stop])
    choice = stopped.choices[0]
    assert choice.finish_reason == "stop" and stop not in choice.text
    assert free.startswith(choice.text) and len(choice.text) <= 20


def test_logprobs_give_each_token_and_its_likeliest_alternatives(client, server):
    _, model_id, _ = server
    choice = client.completions.create(model=model_id, prompt="The", max_tokens=30, logprobs=3, seed=4).choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert all(value <= 0 for value in logprobs.token_logprobs)
    for token, value, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) == 3
        probabilities = list(top.values())
        assert probabilities == sorted(probabilities, reverse=True) and sum(map(math.exp, probabilities)) <= 1.0001
        if token in top:
            assert top[token] == pytest.approx(value)
    assert logprobs.text_offset == list(range(30))  # offsets into the returned text


def test_top_k_from_extra_body(client, server):
    _, model_id, _ = server
    greedy = client.completions.create(model=model_id, prompt="The", max_tokens=30, temperature=0).choices[0].text
    top_one = client.completions.create(model=model_id, prompt="The", max_tokens=30, extra_body={"top_k": 1}, seed=9)
    assert top_one.choices[0].text == greedy


def test_beam_search_from_extra_body(client, server):
    _, model_id, directory = server
    result = client.completions.create(model=model_id, prompt="The", max_tokens=20, n=2, extra_body={"beam_width": 4})
    expected = textgen.load(directory).sample(prompt="The", length=20, beam_width=4, num_return=2)
    assert [choice.text for choice in result.choices] == [sample.text for sample in expected]


def test_a_streamed_beam_search_echoes_the_prompt_and_counts_its_tokens(client, server):
    _, model_id, directory = server
    options = dict(model=model_id, prompt="The", max_tokens=20, n=2, extra_body={"beam_width": 4}, echo=True)
    chunks = list(client.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    expected = textgen.load(directory).sample(prompt="The", length=20, beam_width=4, num_return=2)
    texts = {}
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert [texts[0], texts[1]] == ["The" + sample.text for sample in expected]  # the prompt was left out
    assert chunks[-1].usage.completion_tokens == sum(sample.tokens for sample in expected)


def test_chat_streams_deltas(client, server):
    _, model_id, _ = server
    messages = [{"role": "system", "content": "The"}, {"role": "user", "content": "river"}]
    chunks = list(client.chat.completions.create(model=model_id, messages=messages, max_tokens=40, seed=1, stream=True))
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    whole = client.chat.completions.create(model=model_id, messages=messages, max_tokens=40, seed=1)
    assert streamed == whole.choices[0].message.content and len(streamed) == 40
    completion = client.completions.create(model=model_id, prompt="The\nriver", max_tokens=40, seed=1)
    assert completion.choices[0].text == streamed  # the messages, joined by newlines, are the prompt


def test_chat_logprobs(client, server):
    _, model_id, _ = server
    result = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "a"}], max_tokens=10, logprobs=True, top_logprobs=2
    )
    content = result.choices[0].logprobs.content
    assert "".join(entry.token for entry in content) == result.choices[0].message.content
    assert all(len(entry.top_logprobs) == 2 for entry in content)


@pytest.mark.parametrize(
    "message, words",
    [
        ({"role": 5, "content": "a"}, "each message needs a role (a string), got 5"),
        ({"content": "a"}, "each message needs a role (a string), got None"),
        ({"role": "user"}, "each message must be an object with a text content"),
    ],
)
def test_bad_chat_messages_are_400(client, server, message, words):
    _, model_id, _ = server
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=model_id, messages=[message], max_tokens=3)
    assert words in raised.value.body["message"] and raised.value.body["param"] == "messages"


@pytest.mark.parametrize(
    "options, param, words",
    [
        ({"temperature": -1}, "temperature", "temperature must be in [0, 100]"),
        ({"max_tokens": 10**6}, "max_tokens", "max_tokens must be an integer from 0 to 20,000"),
        ({"extra_body": {"temprature": 0.5}}, "temprature", "unrecognized request argument: temprature"),
        ({"extra_body": {"top_k": 0}}, "top_k", "top_k must be an integer >= 1"),
        ({"extra_body": {"top_k": "5"}}, "top_k", "top_k must be a number"),
        ({"top_p": 1.5}, "top_p", "top_p must be in (0, 1]"),
        ({"n": 0}, "n", "n must be an integer from 1 to 64"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "stop takes at most 4"),
        ({"prompt": "snow \u2603"}, "prompt", "characters not in the model's vocabulary: '\u2603'"),
        ({"logprobs": 6}, "logprobs", "logprobs must be an integer from 0 to 5"),
        ({"presence_penalty": 0.5}, "presence_penalty", "not supported"),
        (  # 188 MB of JSON held whole: refused before a step is taken
            {"n": 64, "max_tokens": 20000, "logprobs": 5},
            "logprobs",
            "is 7,680,000 log-probabilities; an answer that is not streamed holds at most 500,000",
        ),
    ],
)
def test_bad_requests_are_400_with_openai_error_bodies(client, server, options, param, words):
    _, model_id, _ = server
    request = {"model": model_id, "prompt": "The", "max_tokens": 5, **options}
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(**request)
    error = raised.value.body
    assert words in error["message"] and error["param"] == param and error["type"] == "invalid_request_error"
    assert client.completions.create(model=model_id, prompt="The", max_tokens=3).choices[0].text  # still serving


def test_a_streamed_answer_may_carry_any_number_of_log_probabilities():
    from textgen.serving.openai_requests import RequestRefused, parse_completion

    body = {"model": "m", "prompt": "a", "n": 64, "max_tokens": 20000, "logprobs": 5, "stream": True}
    assert parse_completion(body, chat=False).logprobs == 5  # sent as they come, none kept
    chat = {"model": "m", "messages": [{"role": "user", "content": "a"}], "n": 30, "max_tokens": 20000}
    with pytest.raises(RequestRefused, match="n x max_tokens x \\(1 \\+ top_logprobs\\) is 600,000"):
        parse_completion({**chat, "logprobs": True}, chat=True)


def test_an_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="../../etc/passwd", prompt="a", max_tokens=3)


def test_malformed_json_and_wrong_types(server):
    base, model_id, _ = server
    for body, words in [
        (b"{not json", "not valid JSON"),
        (b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper than it can be read"),  # was a 500
        (b'{"max_tokens": ' + b"9" * 5000 + b"}", "a number of more digits than are read"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"model": model_id, "prompt": "a", "stream": "yes"}).encode(), "stream must be true or false"),
        (json.dumps({"model": model_id, "prompt": "a", "max_tokens": True}).encode(), "max_tokens must be an integer"),
        (json.dumps({"model": model_id, "prompt": [1, 2]}).encode(), "prompt must be one string"),
    ]:
        response = httpx.post(f"{base}/v1/completions", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and words in response.json()["error"]["message"], body


def test_a_huge_body_is_refused_without_being_read(server):
    base, model_id, _ = server
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000000\r\n\r\n{"model": '
        )  # 100 MB announced, 10 bytes sent: the answer comes before the rest would
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):  # the headers, then the JSON
            piece = connection.recv(65536)
            if not piece:
                break
            reply += piece
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "at most 1,048,576 are read" in reply


def _health(base, model_id):
    return httpx.get(f"{base}/health", timeout=5).json()["models"][model_id]


def test_a_client_that_goes_away_frees_its_row(server, slow_model):
    base, _, _ = server
    body = {"model": slow_model.name, "prompt": "a", "max_tokens": 20000, "stream": True}
    with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()  # held: a dropped iterator closes the connection
        for _ in range(3):
            next(lines)
        assert live_streams(base, slow_model.name) == 1
    for _ in range(200):
        if live_streams(base, slow_model.name) == 0:
            break
        threading.Event().wait(0.02)
    steps = _health(base, slow_model.name)["steps"]
    threading.Event().wait(0.3)
    assert _health(base, slow_model.name) == {"streams": 0, "steps": steps}  # nothing more is written
    assert steps < 20000  # the row left long before its end


def test_64_concurrent_streams_each_get_the_text_of_their_seed_alone(server):
    import asyncio

    base, model_id, directory = server
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)

    async def one(seed):
        stream = await client.completions.create(
            model=model_id, prompt="The ", max_tokens=100, temperature=0.9, seed=seed, stream=True
        )
        return "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])

    async def all_at_once():
        return await asyncio.gather(*(one(seed) for seed in range(64)))

    texts = asyncio.run(all_at_once())
    generator = textgen.load(directory)
    alone = [generator.generate("The ", length=100, temperature=0.9, seed=seed)[4:] for seed in range(64)]
    assert texts == alone and len(set(texts)) == 64
