"""How well a saved model predicts held-out text.

The files are read as one continuous stream, the way the model is used: the
RNN state is carried through the whole text (no resets at window edges), and
every token after the first is scored given all the text before it.

    loss                mean nats per scored token:  -mean(log p(token | text before it))
    perplexity          exp(loss)
    bits_per_character  total bits / characters scored (comparable across tokenizers)
"""

import numpy as np

from textgen.config import CorpusConfig, TokenizerConfig
from textgen.data.corpus import iter_corpus_text, resolve_corpus_sources
from textgen.data.token_store import open_token_store
from textgen.errors import TextgenError
from textgen.generation.probabilities import log_softmax
from textgen.metrics import loss_metrics

# Logits held in memory at once while scoring (tokens x vocabulary floats).
_LOGITS_PER_CHUNK = 1 << 21


def score_tokens(engine, ids):
    """Total nats of ids[1:] given the ids before them, the state carried across chunks."""
    chunk = max(16, _LOGITS_PER_CHUNK // engine.vocabulary_size)
    state = engine.initial_state(1)
    total = 0.0
    for start in range(0, len(ids) - 1, chunk):
        inputs = np.asarray(ids[start : start + chunk])  # (time,); a TokenFile reads just this stretch
        targets = np.asarray(ids[start + 1 : start + chunk + 1])  # the next token of each input
        logits, state = engine.run(inputs[np.newaxis, : len(targets)], state)  # (1, time, vocab)
        log_probabilities = log_softmax(logits[0])  # (time, vocab)
        total -= log_probabilities[np.arange(len(targets)), targets].sum()
    return total


def evaluate_text(generator, text):
    """Metrics for ``text`` under the generator's model; see the module docstring."""
    tokenizer = generator.tokenizer
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        raise TextgenError("the text to evaluate is shorter than two tokens")
    nats = score_tokens(generator.engine, ids)
    first_token = tokenizer.split(text.lower() if tokenizer.lowercase else text)[0]
    characters = len(text) - len(first_token)  # the first token is context, not scored
    return _metrics(nats, len(ids) - 1, characters)


def _metrics(nats, tokens, characters):
    loss = nats / tokens
    return {"loss": loss, **loss_metrics(loss, characters / tokens), "tokens": tokens, "characters": characters}


def evaluate_files(generator, paths, *, encoding="utf-8", errors="strict"):
    """Metrics for files read (and joined) exactly as a training corpus is.

    The files stream into a token store (data/token_store.py) and are scored
    from it, so a file larger than memory can be evaluated.
    """
    config = CorpusConfig(
        sources=tuple(str(path) for path in paths), encoding=encoding, errors=errors, validation_fraction=0.0
    )
    tokenizer = generator.tokenizer
    # evaluate has no --encoding or --errors: it reads the files as the model's corpus was read.
    hint = f"the model was trained on {encoding} text with errors={errors}; evaluate reads files the same way"
    resolved = resolve_corpus_sources(config)
    corpus, _, ids = open_token_store(
        config,
        TokenizerConfig(level=tokenizer.kind, lowercase=tokenizer.lowercase),
        resolved=resolved,
        tokenizer=tokenizer,
        unknown_hint="",  # evaluate has no --drop-unknown: the text is scored as it is or not at all
        decoding_hint=hint,
    )
    if len(ids) < 2:
        raise TextgenError("the text to evaluate is shorter than two tokens")
    # The first token is context, not scored: its characters are left out of bits per character.
    first_piece = next(iter(tokenizer.token_aligned(iter_corpus_text(resolved[0], config, hint=hint))))
    first_token = tokenizer.split(first_piece.lower() if tokenizer.lowercase else first_piece)[0]
    return _metrics(score_tokens(generator.engine, ids), len(ids) - 1, corpus.characters - len(first_token))
