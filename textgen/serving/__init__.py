"""Serving: `textgen serve`, an OpenAI-compatible HTTP API and a web playground over saved models.

    catalog.py          the models served, by id (a fixed map: no path comes from a request)
    openai_requests.py  request bodies checked into a ``Completion`` (the same rules as `textgen sample`)
    row_sampling.py     choosing the next token of many streams with different settings, in one batch
    batcher.py          continuous batching: every live stream of a model is one row of one engine step
    responses.py        the OpenAI JSON shapes written back (completions, chunks, errors)
    app.py              the Starlette application: routes, the key, the body limit, server-sent events
    server.py           `serve()`: start, print the addresses, stop cleanly on Ctrl-C / SIGTERM
    playground/         the page at / (plain HTML, CSS and JavaScript, shipped in the package)

No TensorFlow is imported here: models run on the NumPy engine, so a server starts in well under a second.
"""
