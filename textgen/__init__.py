"""textgen: train a character- or word-level RNN on any text, and write like it.

    import textgen
    generator = textgen.load("saved_models/tiny_shakespeare")
    print(generator.generate("ROMEO:", length=200, temperature=0.8, seed=1))

Importing textgen is cheap: TensorFlow loads only when training.
"""

__version__ = "0.1.0"


def load(path=None):
    """A ``Generator`` for the saved model at ``path`` (default: the newest under ./saved_models)."""
    from textgen.generation.generator import load as load_generator

    return load_generator(path)
