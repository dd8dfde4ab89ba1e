"""Everything training needs from the text, prepared and checked before TensorFlow loads.

corpus -> tokenizer -> token ids -> contiguous train / validation split, with
the checks that a run can actually train (enough text for a batch of windows,
enough held-out text for one window). Kept free of TensorFlow so that a bad
corpus fails in a fraction of a second, with nothing written.
"""

import dataclasses

import numpy as np

from textgen.data.corpus import resolve_corpus_sources, split_train_validation
from textgen.data.token_store import open_token_store
from textgen.data.windows import steps_per_epoch, training_windows, validation_windows
from textgen.errors import TextgenError


@dataclasses.dataclass(frozen=True)
class TrainingText:
    """A tokenized corpus, split for training and validation."""

    corpus: object  # token_store.StoredCorpus: what is known of the corpus (the text stays on disk)
    tokenizer: object  # tokenizer.Tokenizer
    train_ids: object  # (train_tokens,) a token_file.TokenFile slice (on disk), or an int32 array
    validation_ids: np.ndarray  # (validation_tokens,) likewise

    @property
    def characters_per_token(self):
        """Average characters per token (1 at the char level); turns nats/token into bits/char."""
        return self.corpus.characters / max(1, len(self.train_ids) + len(self.validation_ids))

    def steps_per_epoch(self, train_config):
        return steps_per_epoch(len(self.train_ids), train_config.seq_length, train_config.batch_size)


def prepare_training_text(
    corpus_config, tokenizer_config, train_config, *, tokenizer=None, drop_unknown=False, resolved=None
):
    """Read, tokenize and split the corpus; raise ``TextgenError`` if it cannot train.

    A ``tokenizer`` given (a resumed or fine-tuned run's) is used as it is
    instead of fitting one; ``drop_unknown`` leaves out characters it lacks.
    ``resolved``: the sources' files and name, if already resolved (``resolve_sources``).

    Returns:
        (TrainingText, TrainConfig): the train config may come back with a
        smaller batch size when a short corpus has fewer windows than a batch.
    """
    # Streamed into the token store, read back from disk by position. A given
    # word tokenizer reads words outside its vocabulary as <unk>.
    resolved = resolved or resolve_corpus_sources(corpus_config)
    corpus, tokenizer, ids = open_token_store(
        corpus_config, tokenizer_config, resolved=resolved, tokenizer=tokenizer, drop_unknown=drop_unknown
    )
    train_ids, validation_ids = split_train_validation(ids, corpus_config.validation_fraction)
    seq_length = train_config.seq_length
    windows = training_windows(len(train_ids), seq_length)
    if windows < 1:
        raise TextgenError(
            f"the corpus is too short: {len(train_ids)} training tokens, fewer than one window of "
            f"{seq_length + 1} (--seq-length {seq_length}); use a smaller --seq-length or more text"
        )
    if corpus_config.validation_fraction > 0 and validation_windows(len(validation_ids), seq_length) < 1:
        raise TextgenError(
            f"the validation split has {len(validation_ids)} tokens, fewer than one window of {seq_length + 1}; "
            f"raise --validation-fraction, lower --seq-length, or pass --validation-fraction 0"
        )
    if windows < train_config.batch_size:
        # A short text (a poem, a notebook) still trains: one batch holds all its windows.
        train_config = dataclasses.replace(train_config, batch_size=windows)
    text = TrainingText(corpus, tokenizer, train_ids, validation_ids)
    return text, train_config
