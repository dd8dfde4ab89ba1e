"""Serving: `textgen serve`, an OpenAI-compatible HTTP API and a web playground over saved models.

    catalog.py          the models served, by id (a fixed map: no path comes from a request)
    openai_requests.py  request bodies checked into a ``Completion`` (the same rules as `textgen sample`)
    rows.py             a request in the batcher, and each of its choices while it writes
    row_sampling.py     choosing the next token of many streams with different settings, in one batch
    arrivals.py         requests that arrive together handed to the batcher together, once read
    batcher.py          continuous batching: every live stream of a model is one row of one engine step
    prompt_reading.py   the prompts of the requests taken in, read as one batch, a piece per turn
    stream_sink.py      one request's events, from the batcher's thread to the event loop
    responses.py        the OpenAI JSON shapes written back (completions, chunks, errors)
    app.py              the Starlette application: routes, the key, the body limit, server-sent events
    server.py           `serve()`: start, print the addresses, stop cleanly on Ctrl-C / SIGTERM
    playground/         the page at / (plain HTML, CSS and JavaScript, shipped in the package)

No TensorFlow is imported here: models run on the NumPy engine, so a server starts in well under a second.
"""
