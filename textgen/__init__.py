"""textgen: train a character- or word-level RNN on any text, and write like it.

    import textgen
    result = textgen.train("notes.txt", time_budget="90s")          # saved_models/notes/
    generator = textgen.load(result.directory)
    print(generator.generate("The", length=200, temperature=0.8, seed=1))

Importing textgen is cheap: TensorFlow loads only when training (or for the
"keras" sampling engine).
"""

from textgen.version import __version__  # noqa: F401  (the public name: textgen.__version__)


def train(corpus, **options):
    """Train a model on ``corpus``; see ``textgen.training.run.train`` for every option."""
    from textgen.training.run import train as train_model

    return train_model(corpus, **options)


def load(path=None, *, engine="auto"):
    """A ``Generator`` for the saved model at ``path`` (default: the newest under ./saved_models).

    ``engine``: "numpy" (instant start, no TensorFlow), "keras" (a compiled
    TensorFlow step) or "auto" (numpy, the faster one on every batch measured).
    """
    from textgen.generation.generator import load as load_generator

    return load_generator(path, engine=engine)


def serve(models=(), **options):
    """Serve saved model directories over HTTP until Ctrl-C or SIGTERM: the OpenAI-style API and the
    playground (what `textgen serve` runs; see ``textgen.serving.server.serve`` for the options)."""
    from textgen.serving.server import serve as serve_models

    return serve_models(models, **options)
