"""A model directory holding Keras's initial weights: for speed measurements and tests.

How fast a network writes does not depend on what its weights say, so a
benchmark or a test that needs a big network need not train one first.
"""

from textgen.config import CorpusConfig, ModelConfig, TokenizerConfig, TrainConfig
from textgen.data.tokenizer import CharTokenizer
from textgen.saved.layout import MODEL_FILE
from textgen.saved.saved_model import write_settings


def write_untrained_model(directory, text, *, cell="lstm", layers=2, units=256):
    """A char-level model of ``text``'s characters at ``directory`` (created), untrained."""
    from textgen.model import build_model  # loads TensorFlow

    tokenizer = CharTokenizer.fit(text)
    model_config = ModelConfig(cell=cell, layers=layers, units=units)
    directory.mkdir(parents=True)
    write_settings(
        directory,
        model=model_config,
        tokenizer_config=TokenizerConfig(),
        train=TrainConfig(),
        corpus_config=CorpusConfig(sources=("untrained",)),
        corpus_summary={},
        tokenizer=tokenizer,
        versions={},
    )
    build_model(model_config, tokenizer.vocabulary_size).save(directory / MODEL_FILE)
    return directory
